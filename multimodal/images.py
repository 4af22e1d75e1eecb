"""The image pipeline: any accepted image in, an upright, small, metadata-free JPEG or PNG out.

The same code serves the Image tab, the chat input and `image_url` parts
arriving at /v1/chat/completions. Steps, in order:

1. identify the file by its content and read only its header;
2. let libjpeg scale a large JPEG down by 2, 4 or 8 while it decodes
   (`Image.draft`), which is what keeps a 24-megapixel photo fast;
3. reject an image that would decode to too many pixels, before a single
   pixel is decoded, then decode;
4. convert every mode to 8-bit L, LA, RGB or RGBA;
5. downscale to the model's long side, then apply the EXIF orientation
   (rotating after the downscale moves four times fewer pixels, and the
   result is the same);
6. convert to sRGB when an ICC profile is embedded, then drop the profile;
7. encode without any metadata (EXIF, GPS, XMP, IPTC, ICC, comments),
   shrinking further until the model's byte limit is met.

`prepare_image` is CPU-bound; async callers use `ImagePipeline.prepare`,
which runs it in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import io
import logging
import struct
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, cast

from PIL import Image, ImageCms, UnidentifiedImageError
from pydantic import Field

from backends.settings import ModelSettings, StrictModel
from backends.types import ImagePart
from multimodal.image_errors import (
    ImageCorruptError,
    ImageFileTooLargeError,
    ImageFormatNotAcceptedError,
    ImageOverByteLimitError,
    ImageTooManyPixelsError,
    ImageTruncatedError,
    NotAnImageError,
)
from multimodal.image_formats import ACCEPTED_FORMATS, LOSSY_FORMATS, identify

logger = logging.getLogger(__name__)

# Pillow itself refuses to open anything above twice Image.MAX_IMAGE_PIXELS
# (2 × 89,478,485 in Pillow 10-12), so a configured limit above that could never apply.
_PILLOW_HARD_PIXEL_LIMIT = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
_OVER_PILLOW_LIMIT_FIX = f"Send a smaller image; images.max_pixels cannot be raised above {_PILLOW_HARD_PIXEL_LIMIT}."

# A JPEG may decode up to 10% below the model's long side when that lets libjpeg
# use the next coarser scale: a 6000x4000 photo then decodes at 1500x1000 for a
# 1568 limit, in a quarter of the memory that 3000x2000 would take.
_DRAFT_SLACK = 0.9

# Start-of-scan markers a JPEG may have: a progressive photo has about 10, an
# MPO file a few per frame, and its EXIF thumbnails one each.
_MAX_JPEG_SCANS = 500

# Marker segments read before the first scan of a JPEG; camera files have about 15.
_MAX_HEADER_SEGMENTS = 1000

# Start-of-frame markers other than SOF0/SOF1 (sequential Huffman): progressive,
# lossless, hierarchical and arithmetic-coded frames, which may have many scans.
_OTHER_SOF_MARKERS = frozenset({0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})

# The smallest long side the byte-limit loop shrinks to before it gives up.
_MIN_SIDE = 64

# A 256x256 sample with more distinct colours than this is treated as a photo.
_GRAPHICS_MAX_COLOURS = 2048

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

# Errors Pillow raises on damaged data, while opening or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)

Transparency = Literal["none", "kept", "removed_opaque"]


class ImageSettings(StrictModel):
    """The `[images]` config section: limits for every image, whichever model it goes to."""

    max_pixels: int = Field(
        default=50_000_000,
        gt=0,
        le=_PILLOW_HARD_PIXEL_LIMIT,
        description="Pixels an image may decode to (a JPEG after reduced-scale decoding); checked before decoding.",
    )
    max_upload_mb: float = Field(default=40.0, gt=0, le=500, description="Size of an uploaded file in MB.")
    default_side: int = Field(
        default=1568, gt=0, description="Long side in pixels for callers with no model chosen (the Image tab)."
    )
    default_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, description="Bytes per prepared image for callers with no model chosen."
    )
    jpeg_quality: int = Field(default=85, ge=30, le=95, description="JPEG quality of the first encoding attempt.")
    max_images: int = Field(default=16, ge=1, le=100, description="Images in one chat request, history included.")
    workers: int = Field(default=2, ge=1, le=16, description="Images prepared at the same time.")

    def limits(self, model: ModelSettings | None = None) -> ImageLimits:
        """Combine these settings with a model's image limits (or the defaults when there is no model)."""
        return ImageLimits(
            max_side=model.max_image_side if model else self.default_side,
            max_bytes=model.max_image_bytes if model else self.default_bytes,
            max_pixels=self.max_pixels,
            max_upload_bytes=int(self.max_upload_mb * 1024 * 1024),
            jpeg_quality=self.jpeg_quality,
        )


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Limits for one image: long side in pixels, encoded bytes, source pixels and source bytes."""

    max_side: int = 1568
    max_bytes: int = 5 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_upload_bytes: int = 40 * 1024 * 1024
    jpeg_quality: int = 85


@dataclass(frozen=True, slots=True)
class ImageReport:
    """What the pipeline did to one image, for the Image tab and the logs.

    Sizes are (width, height). `source_size` is as stored in the file, before
    the EXIF orientation (HEIC decoders apply it themselves, so a HEIC's
    `source_size` is already upright); `final_size` is what the model receives.
    `orientation` is the EXIF orientation the file stated, 1 for upright.
    """

    source_format: str
    source_mode: str
    source_size: tuple[int, int]
    source_bytes: int
    final_format: str
    final_mode: str
    final_size: tuple[int, int]
    final_bytes: int
    orientation: int
    decode_scale: int
    downscaled: bool
    colour_profile: str
    transparency: Transparency
    first_frame_only: bool
    metadata_removed: tuple[str, ...]
    jpeg_quality: int | None
    seconds: float

    @property
    def rotated(self) -> bool:
        return self.orientation != 1

    @property
    def mode_converted(self) -> bool:
        return self.source_mode != self.final_mode


@dataclass(frozen=True, slots=True)
class PreparedImage:
    part: ImagePart
    report: ImageReport


def prepare_image(data: bytes, limits: ImageLimits) -> PreparedImage:
    """Turn the bytes of an uploaded image into an `ImagePart` a model can take.

    Raises `InvalidInputError` subclasses from `multimodal.image_errors` for
    anything that is not an accepted, intact image within `limits`.
    """
    started = time.perf_counter()
    _check_upload_size(data, limits)

    with _open(data, limits) as image:
        source_format = image.format or "unknown"
        source_mode = image.mode
        source_size = image.size
        _check_jpeg_scans(data, source_format)

        # The limit applies to what will be decoded: a large JPEG decoded at
        # reduced scale needs only that much memory, whatever its header says.
        decode_scale = _draft(image, limits.max_side)
        _check_pixels(image.size, limits)

        first_frame_only = bool(getattr(image, "is_animated", False))
        _load(image, data, source_format, limits)

        # Read after load(): PNG text and EXIF chunks may follow the image data.
        metadata = _metadata_labels(image)
        orientation = _orientation(image)
        # pillow-heif rotates while decoding and keeps the stated value here.
        stated_orientation = int(image.info.get("original_orientation") or 1)
        icc_profile = image.info.get("icc_profile")

        pixels = _to_8bit(image)
        decoded_size = pixels.size
        pixels = _downscale(pixels, limits.max_side)
        downscaled = decode_scale > 1 or pixels.size != decoded_size
        pixels = _apply_orientation(pixels, orientation)
        pixels, colour_profile = _to_srgb(pixels, icc_profile)
        pixels, transparency = _drop_opaque_alpha(pixels)

    encoded = _encode(pixels, lossy=source_format in LOSSY_FORMATS, limits=limits)
    report = ImageReport(
        source_format=source_format,
        source_mode=source_mode,
        source_size=source_size,
        source_bytes=len(data),
        final_format=encoded.format,
        final_mode=encoded.mode,
        final_size=encoded.size,
        final_bytes=len(encoded.data),
        orientation=orientation if orientation != 1 else stated_orientation,
        decode_scale=decode_scale,
        downscaled=downscaled,
        colour_profile=colour_profile,
        transparency=transparency,
        first_frame_only=first_frame_only,
        metadata_removed=metadata,
        jpeg_quality=encoded.quality,
        seconds=time.perf_counter() - started,
    )
    logger.info(
        "image prepared: %s %dx%d %d B -> %s %dx%d %d B in %.3f s",
        source_format,
        *source_size,
        len(data),
        encoded.format,
        *encoded.size,
        len(encoded.data),
        report.seconds,
    )
    return PreparedImage(part=ImagePart.from_bytes(encoded.data, encoded.mime), report=report)


class ImagePipeline:
    """Runs `prepare_image` off the event loop, at most `settings.workers` images at a time.

    Pass `executor` to share a pool the application already bounds;
    otherwise the pipeline owns a pool and `close()` shuts it down.
    """

    def __init__(self, settings: ImageSettings, executor: Executor | None = None) -> None:
        self.settings = settings
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="parley-image"
        )

    def limits(self, model: ModelSettings | None = None) -> ImageLimits:
        return self.settings.limits(model)

    def prepare_sync(self, data: bytes, model: ModelSettings | None = None) -> PreparedImage:
        """Prepare one image in the calling thread, for code that already runs in a worker."""
        return prepare_image(data, self.limits(model))

    async def prepare(self, data: bytes, model: ModelSettings | None = None) -> PreparedImage:
        """Prepare one image in the pipeline's pool, with `model`'s limits (or the defaults)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, prepare_image, data, self.limits(model))

    def close(self) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)


# Opening and checking.


def _check_upload_size(data: bytes, limits: ImageLimits) -> None:
    if len(data) <= limits.max_upload_bytes:
        return
    size_mb = round(len(data) / 1024 / 1024, 1)
    limit_mb = round(limits.max_upload_bytes / 1024 / 1024, 1)
    raise ImageFileTooLargeError(
        f"the image file is {size_mb} MB, over the limit of {limit_mb} MB",
        size_mb=size_mb,
        limit_mb=limit_mb,
    )


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """Open `data` lazily (header only) with the accepted decoders, or raise an error naming what the file is."""
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit(data, limits) from exc
    except UnidentifiedImageError as exc:
        raise _unreadable(data, exc) from exc
    except _DECODE_ERRORS as exc:
        raise _unreadable(data, exc) from exc


def _over_pillow_limit(data: bytes, limits: ImageLimits) -> ImageTooManyPixelsError:
    """Build the error for an image that Pillow's own pixel guard rejected at open, with its real size.

    Pillow's guard (`_PILLOW_HARD_PIXEL_LIMIT`) stays as the backstop, but
    its limit is not the configured one, so the message names the file's
    size and `images.max_pixels` instead.
    """
    header = _header_without_guard(data)
    if header is None or header[1][0] * header[1][1] <= _PILLOW_HARD_PIXEL_LIMIT:
        # The guard tripped on a size the header does not state, such as a
        # GIF frame larger than its canvas.
        return _over_pillow_limit_late(limits)

    image_format, (width, height) = header
    # A JPEG's configured limit applies after reduced-scale decoding, but
    # Pillow rejects it before that, so the limit it failed is Pillow's.
    limit = _PILLOW_HARD_PIXEL_LIMIT if image_format in ("JPEG", "MPO") else limits.max_pixels
    return ImageTooManyPixelsError(
        f"the image is {width}x{height} = {width * height} pixels, over the limit of {limit}",
        fix=_OVER_PILLOW_LIMIT_FIX,
        width=width,
        height=height,
        megapixels=f"{width * height / 1e6:.1f}",
        max_megapixels=f"{limit / 1e6:.1f}",
    )


def _over_pillow_limit_late(limits: ImageLimits) -> ImageTooManyPixelsError:
    """Build the error for Pillow's pixel guard tripping after the header: only "more than" is known."""
    return ImageTooManyPixelsError(
        f"the image has more than {_PILLOW_HARD_PIXEL_LIMIT} pixels, "
        f"over the limit of {limits.max_pixels} (images.max_pixels)",
        fix=_OVER_PILLOW_LIMIT_FIX,
        over_megapixels=f"{_PILLOW_HARD_PIXEL_LIMIT / 1e6:.1f}",
        max_megapixels=f"{limits.max_pixels / 1e6:.1f}",
    )


def _header_without_guard(data: bytes) -> tuple[str, tuple[int, int]] | None:
    """Read the format and size from the header with Pillow's openers, skipping its pixel guard.

    Mirrors how `Image.open` picks an opener (each accepted format whose
    `accept` test passes on the first 16 bytes) but calls the opener itself,
    which reads only the header. Returns None when no opener can read the
    size without tripping a guard of its own.
    """
    Image.init()
    prefix = data[:16]
    for image_format in ACCEPTED_FORMATS:
        registered = Image.OPEN.get(image_format)
        if registered is None:
            continue
        factory, accept = registered
        # An accept test returns a str to say "this format, but unsupported here".
        matched = accept(prefix) if accept is not None else True
        if isinstance(matched, str) or not matched:
            continue
        try:
            with factory(io.BytesIO(data), "") as image:
                return image.format or image_format, image.size
        except (*_DECODE_ERRORS, struct.error, Image.DecompressionBombError):
            continue
    return None


def _unreadable(data: bytes, exc: Exception) -> Exception:
    """Build the error for content no accepted decoder could open."""
    kind = identify(data[:4096])
    if not kind.is_image:
        return NotAnImageError(f"the file is {kind.en}, not an image", kind=kind.en, kind_zh=kind.zh)

    if not kind.image_format:
        return ImageFormatNotAcceptedError(
            f"the file is {kind.en}, which the image pipeline does not read", kind=kind.en, kind_zh=kind.zh
        )

    # Pillow's "cannot identify image file <_io.BytesIO ...>" names an object, not the problem.
    reason = "no decoder could read its header" if isinstance(exc, UnidentifiedImageError) else str(exc)
    return ImageCorruptError(
        f"the file starts like {kind.en} but its header is damaged ({reason})",
        format=kind.image_format,
        reason=reason,
    )


def _check_pixels(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width * height <= limits.max_pixels:
        return
    raise ImageTooManyPixelsError(
        f"the image is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}",
        width=width,
        height=height,
        megapixels=f"{width * height / 1e6:.1f}",
        max_megapixels=f"{limits.max_pixels / 1e6:.1f}",
    )


def _check_jpeg_scans(data: bytes, source_format: str) -> None:
    """Reject a JPEG with absurdly many scans before libjpeg decodes them.

    Each progressive scan makes libjpeg walk all coefficients again, so a small
    file with thousands of scans can hold a worker for a long time (the
    TurboJPEG API of libjpeg-turbo has a scan limit for this). Byte stuffing keeps FF DA
    out of entropy-coded data, so the count is the start-of-scan markers plus
    the few that binary metadata (ICC, maker notes) contains by chance.
    """
    if source_format not in ("JPEG", "MPO"):
        return

    # Counting reads the whole file (about 10 ms for 9 MB), so skip it when
    # libjpeg itself stops after one scan.
    if source_format == "JPEG" and _is_single_scan_jpeg(data):
        return

    scans = data.count(b"\xff\xda")
    if scans <= _MAX_JPEG_SCANS:
        return
    reason = f"{scans} scans, where photos have at most a few dozen"
    raise ImageCorruptError(
        f"the JPEG file has {scans} scans, over the limit of {_MAX_JPEG_SCANS}", format=source_format, reason=reason
    )


def _is_single_scan_jpeg(data: bytes) -> bool:
    """Tell whether a JPEG is sequential (SOF0 or SOF1) with every component in its first scan.

    libjpeg decodes such a file in one scan and raises an error at any further
    start-of-scan marker, so its scans need no counting. Walks the marker
    segments up to the first scan; anything unexpected returns False, which
    leaves the file to the full count.
    """
    components: int | None = None
    position = 2
    for _ in range(_MAX_HEADER_SEGMENTS):
        if position + 4 > len(data) or data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:
            # A fill byte before the marker.
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            # TEM, RSTn and SOI stand alone, with no length field.
            position += 2
            continue

        payload = position + 4
        if marker in (0xC0, 0xC1):
            # SOF payload: precision (1 byte), height (2), width (2), then the component count.
            if payload + 6 > len(data):
                return False
            components = data[payload + 5]
        elif marker in _OTHER_SOF_MARKERS:
            return False
        elif marker == 0xDA:
            # SOS payload starts with the number of components in the scan.
            return components is not None and payload < len(data) and data[payload] == components
        elif marker == 0xD9:
            return False
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return False


def _load(image: Image.Image, data: bytes, source_format: str, limits: ImageLimits) -> None:
    try:
        image.load()
    except Image.DecompressionBombError as exc:
        raise _over_pillow_limit_late(limits) from exc
    except _DECODE_ERRORS as exc:
        if _is_truncated(data, source_format):
            raise ImageTruncatedError(
                f"the {source_format} file ends before its image data does ({exc})", format=source_format
            ) from exc
        raise ImageCorruptError(
            f"the {source_format} image could not be decoded ({exc})", format=source_format, reason=str(exc)
        ) from exc


def _is_truncated(data: bytes, source_format: str) -> bool:
    """Tell whether a file that failed to decode lacks the end marker its format requires."""
    tail = data[-64:].rstrip(b"\x00")
    if source_format in ("JPEG", "MPO"):
        return not tail.endswith(b"\xff\xd9")
    if source_format == "PNG":
        return not tail.endswith(b"IEND\xaeB`\x82")
    if source_format == "GIF":
        return not tail.endswith(b";")
    return False


# Reading the file's own metadata.


def _metadata_labels(image: Image.Image) -> tuple[str, ...]:
    """Name the kinds of metadata the file carries; none of them reaches the model."""
    info = image.info
    labels: list[str] = []
    exif = image.getexif()
    if exif or "exif" in info:
        labels.append("exif")
    if exif.get_ifd(0x8825):
        labels.append("gps")
    if any(key in info for key in ("xmp", "XML:com.adobe.xmp")):
        labels.append("xmp")
    if "photoshop" in info or "iptc" in info:
        labels.append("iptc")
    if "icc_profile" in info:
        labels.append("icc")
    if "comment" in info:
        labels.append("comment")
    # PngImageFile.text lists tEXt, zTXt and iTXt chunks; other formats have no such attribute.
    text_chunks = set(getattr(image, "text", {}) or {}) - {"XML:com.adobe.xmp"}
    if text_chunks:
        labels.append("text")
    return tuple(labels)


def _orientation(image: Image.Image) -> int:
    value = image.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _draft(image: Image.Image, max_side: int) -> int:
    """Ask libjpeg to decode at 1/2, 1/4 or 1/8 scale, landing at most `_DRAFT_SLACK` below `max_side`.

    Returns the scale denominator (1 when the file is decoded at full size).
    """
    if image.format not in ("JPEG", "MPO"):
        return 1

    target = _fit(image.size, int(max_side * _DRAFT_SLACK))
    if target == image.size:
        return 1

    before = image.size
    image.draft(None, target)
    return max(1, round(before[0] / image.size[0]))


# Pixel work.


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale `size` so its long side is at most `max_side`, keeping the aspect ratio."""
    width, height = size
    long_side = max(width, height)
    if long_side <= max_side:
        return size
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _to_8bit(image: Image.Image) -> Image.Image:
    """Convert any mode to L, LA, RGB, RGBA or CMYK with 8 bits per channel."""
    mode = image.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("P", "PA"):
        # Palette transparency (a tRNS chunk or a GIF transparent index) becomes real alpha.
        has_alpha = mode == "PA" or "transparency" in image.info
        return image.convert("RGBA" if has_alpha else "RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _wide_grey_to_l(image)
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    return image.convert("RGB")


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """Scale 16- and 32-bit grey to 8 bits; Pillow's own convert("L") clips at 255 and turns them white."""
    wide = image.convert("F") if image.mode == "F" else image.convert("I")
    low, high = cast(tuple[float, float], wide.getextrema())
    if image.mode.startswith("I;16") or (image.mode == "I" and 0 <= low and high <= 65535):
        scale, offset = 1 / 257, 0.0
    else:
        span = float(high) - float(low) or 1.0
        scale, offset = 255 / span, -float(low) * 255 / span
    return wide.convert("F").point(lambda value: value * scale + offset).convert("L")


def _downscale(image: Image.Image, max_side: int) -> Image.Image:
    target = _fit(image.size, max_side)
    if target == image.size:
        return image
    # reducing_gap lets Pillow box-reduce by an integer factor first, then run Lanczos on the rest.
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _apply_orientation(image: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return image.transpose(method) if method is not None else image


_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _to_srgb(image: Image.Image, icc_profile: bytes | None) -> tuple[Image.Image, str]:
    """Convert to sRGB through the embedded ICC profile; return the image and the profile's name.

    CMYK without a profile goes through Pillow's plain conversion. A profile
    that LittleCMS cannot read is ignored with a warning rather than
    rejecting a picture that would look nearly right.
    """
    # NOTE: a HEIC that states its colours only as nclx primaries (for example
    # Display P3 without an ICC profile) is sent unconverted, so slightly duller.
    name = ""
    if icc_profile and image.mode in ("RGB", "RGBA", "CMYK"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            name = ImageCms.getProfileDescription(source).strip()
            if "srgb" not in name.lower():
                output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
                converted = ImageCms.profileToProfile(image, source, _SRGB, outputMode=output_mode)
                if converted is not None:
                    image = converted
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            logger.warning("ignoring an unreadable ICC profile (%d bytes): %s", len(icc_profile), exc)
            name = ""

    if image.mode == "CMYK":
        image = image.convert("RGB")
    return image, name


def _drop_opaque_alpha(image: Image.Image) -> tuple[Image.Image, Transparency]:
    """Remove an alpha channel that is fully opaque, so the image can go out as JPEG."""
    if image.mode not in ("LA", "RGBA"):
        return image, "none"
    low, _ = image.getchannel("A").getextrema()
    if low == 255:
        return image.convert(image.mode[:-1]), "removed_opaque"
    return image, "kept"


# Encoding.


@dataclass(frozen=True, slots=True)
class _Encoded:
    data: bytes
    format: str
    mime: str
    mode: str
    size: tuple[int, int]
    quality: int | None


def _encode(image: Image.Image, *, lossy: bool, limits: ImageLimits) -> _Encoded:
    """Encode without metadata: PNG for real transparency or lossless graphics, else JPEG.

    Tries in order until one fits `limits.max_bytes`: PNG (for transparency or
    a screenshot-like lossless source), JPEG at the configured quality and two
    lower ones, then the same at 3/4 the size, down to a long side of 64 pixels.
    """
    has_alpha = image.mode in ("LA", "RGBA")
    if has_alpha or (not lossy and _looks_like_graphics(image)):
        png = _save(image, "PNG", None)
        if len(png.data) <= limits.max_bytes:
            return png

    # JPEG has no alpha: flatten transparency onto white, as a light viewer would show it.
    photo = _flatten_onto_white(image) if has_alpha else image
    qualities = (limits.jpeg_quality, max(30, limits.jpeg_quality - 15), max(30, limits.jpeg_quality - 30))
    while True:
        for quality in qualities:
            jpeg = _save(photo, "JPEG", quality)
            if len(jpeg.data) <= limits.max_bytes:
                return jpeg

        if max(photo.size) <= _MIN_SIDE:
            raise ImageOverByteLimitError(
                f"the image is still {len(jpeg.data)} bytes at {photo.width}x{photo.height}, "
                f"over the limit of {limits.max_bytes} bytes",
                width=photo.width,
                height=photo.height,
                size_kb=round(len(jpeg.data) / 1024, 1),
                limit_kb=round(limits.max_bytes / 1024, 1),
            )
        smaller = _fit(photo.size, max(_MIN_SIDE, max(photo.size) * 3 // 4))
        photo = photo.resize(smaller, Image.Resampling.LANCZOS)


def _looks_like_graphics(image: Image.Image) -> bool:
    """Tell a screenshot, chart or drawing (few distinct colours) from a photo stored losslessly.

    PNG keeps text in the former sharp at a small size, while a photo as
    PNG is several times larger than as JPEG and slow to compress.
    """
    sample = image.resize((min(image.width, 256), min(image.height, 256)), Image.Resampling.NEAREST)
    return sample.getcolors(maxcolors=_GRAPHICS_MAX_COLOURS) is not None


def _flatten_onto_white(image: Image.Image) -> Image.Image:
    opaque_mode = image.mode[:-1]
    background = Image.new(opaque_mode, image.size, 255 if opaque_mode == "L" else (255, 255, 255))
    background.paste(image.convert(opaque_mode), mask=image.getchannel("A"))
    return background


def _save(image: Image.Image, image_format: Literal["PNG", "JPEG"], quality: int | None) -> _Encoded:
    """Encode pixels only, with no EXIF, ICC profile, text chunk or comment."""
    # Pillow's writers fall back to image.info for what no save argument sets
    # (in 12.3: the ICC profile and transparency for PNG, the comment for JPEG).
    image.info.clear()
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=quality)
        mime = "image/jpeg"
    else:
        image.save(buffer, "PNG", compress_level=6)
        mime = "image/png"
    return _Encoded(buffer.getvalue(), image_format, mime, image.mode, image.size, quality)

"""The image pipeline on a corpus generated here with Pillow: orientation, modes, metadata, limits, damage."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from multimodal.image_errors import (
    MESSAGES,
    ImageCorruptError,
    ImageFileTooLargeError,
    ImageFormatNotAcceptedError,
    ImageOverByteLimitError,
    ImageTooManyPixelsError,
    ImageTruncatedError,
    NotAnImageError,
)
from multimodal.images import ImageLimits, ImagePipeline, ImageSettings, prepare_image

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def marked_upright(size: tuple[int, int] = (400, 200)) -> Image.Image:
    """A blue picture as the viewer should see it: a red top-left corner and a green bottom-right one."""
    image = Image.new("RGB", size, BLUE)
    width, height = size
    image.paste(RED, (0, 0, 60, 60))
    image.paste(GREEN, (width - 60, height - 60, width, height))
    return image


def noisy_photo(size: tuple[int, int]) -> Image.Image:
    """Gradients plus noise, so that JPEG and PNG sizes resemble a real photo's."""
    width, height = size
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 60)
    return Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


# What the camera stores for each EXIF orientation, given the upright picture:
# a viewer applies the orientation to the stored pixels to get the upright picture back.
STORED_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_arrives_upright(orientation: int) -> None:
    upright = marked_upright()
    stored = upright.transpose(STORED_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data).convert("RGB")

    assert result.size == (400, 200)
    assert near(result.getpixel((20, 20)), RED)
    assert near(result.getpixel((380, 180)), GREEN)
    assert near(result.getpixel((380, 20)), BLUE)
    assert near(result.getpixel((20, 180)), BLUE)
    assert prepared.report.orientation == orientation
    assert prepared.report.rotated
    assert result.getexif().get(0x0112) is None


def test_cmyk_jpeg_becomes_rgb_with_right_colour() -> None:
    cmyk_red = Image.new("CMYK", (120, 80), (0, 255, 255, 0))
    data = encode(cmyk_red, "JPEG", quality=95)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert prepared.report.source_mode == "CMYK"
    assert result.mode == "RGB"
    assert prepared.part.mime == "image/jpeg"
    assert near(result.getpixel((60, 40)), RED)


def test_palette_png_keeps_transparency_as_png() -> None:
    image = Image.new("P", (100, 50), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    image.paste(1, (50, 0, 100, 50))
    data = encode(image, "PNG", transparency=0)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert prepared.part.mime == "image/png"
    assert result.mode == "RGBA"
    assert result.getpixel((10, 10))[3] == 0
    assert result.getpixel((80, 10)) == (255, 0, 0, 255)
    assert prepared.report.transparency == "kept"


def test_rgba_png_keeps_partial_alpha() -> None:
    image = Image.new("RGBA", (64, 64), (0, 0, 255, 128))
    image.paste((255, 0, 0, 255), (0, 0, 32, 64))
    data = encode(image, "PNG")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert result.mode == "RGBA"
    assert result.getpixel((10, 10)) == (255, 0, 0, 255)
    assert result.getpixel((50, 10)) == (0, 0, 255, 128)


def test_opaque_rgba_png_loses_alpha_channel() -> None:
    data = encode(Image.new("RGBA", (64, 64), (10, 200, 30, 255)), "PNG")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert result.mode == "RGB"
    assert result.getpixel((5, 5)) == (10, 200, 30)
    assert prepared.report.transparency == "removed_opaque"


def test_transparent_webp_flattens_onto_white_as_jpeg() -> None:
    image = noisy_photo((300, 200)).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, 150, 200))
    image.paste((255, 0, 0, 255), (250, 80, 290, 120))
    data = encode(image, "WEBP", lossless=True)

    prepared = prepare_image(data, ImageLimits(max_bytes=40_000))
    result = decode(prepared.part.data)

    # The noise makes a PNG larger than 40 kB, so JPEG it is, and JPEG has no alpha.
    assert prepared.part.mime == "image/jpeg"
    assert near(result.getpixel((40, 100)), WHITE)
    assert near(result.getpixel((270, 100)), RED)


def test_la_png_stays_grey_with_alpha() -> None:
    image = Image.new("LA", (40, 40), (200, 0))
    image.paste((50, 255), (20, 0, 40, 40))
    data = encode(image, "PNG")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert result.mode == "LA"
    assert result.getpixel((5, 5))[1] == 0
    assert result.getpixel((30, 5)) == (50, 255)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    gradient = Image.new("I;16", (256, 8))
    gradient.putdata([x * 257 for _ in range(8) for x in range(256)])
    data = encode(gradient, "PNG")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert prepared.report.source_mode.startswith("I")
    assert result.mode == "L"
    assert result.getpixel((0, 4)) == 0
    assert abs(result.getpixel((128, 4)) - 128) <= 1
    assert result.getpixel((255, 4)) == 255


def test_one_bit_image_becomes_grey() -> None:
    image = Image.new("1", (32, 32), 0)
    image.paste(1, (16, 0, 32, 32))
    data = encode(image, "BMP")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert result.mode == "L"
    assert result.getpixel((4, 4)) == 0
    assert result.getpixel((28, 4)) == 255


def test_animated_gif_sends_first_frame() -> None:
    frames = [Image.new("RGB", (48, 48), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data).convert("RGB")

    assert prepared.report.first_frame_only
    assert getattr(decode(prepared.part.data), "n_frames", 1) == 1
    assert near(result.getpixel((24, 24)), RED, tolerance=8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims `width`x`height` but whose data is a few bytes: decoding would fail."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_pixel_bomb_is_rejected_from_header() -> None:
    data = png_header_only(20000, 20000)

    with pytest.raises(ImageTooManyPixelsError) as caught:
        prepare_image(data, ImageLimits())

    # Pillow's own guard (about 179 megapixels) trips first; the error still
    # names the real size and the configured limit, not Pillow's.
    assert caught.value.http_status == 413
    assert caught.value.params["width"] == 20000
    assert caught.value.params["height"] == 20000
    assert caught.value.params["megapixels"] == "400.0"
    assert caught.value.params["max_megapixels"] == "50.0"
    assert "20000x20000 = 400000000 pixels, over the limit of 50000000" in str(caught.value)
    assert "images.max_pixels" in str(caught.value)


def test_pixel_bomb_limit_is_configured_one() -> None:
    data = png_header_only(20000, 20000)

    with pytest.raises(ImageTooManyPixelsError) as caught:
        prepare_image(data, ImageLimits(max_pixels=2_000_000))

    assert caught.value.params["max_megapixels"] == "2.0"
    assert "over the limit of 2000000" in str(caught.value)


def jpeg_header_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose start-of-frame segment claims `width` x `height`."""
    data = bytearray(encode(Image.new("L", (16, 16), 128), "JPEG"))
    sof = data.index(b"\xff\xc0")
    # SOF0 payload after the marker: length (2), precision (1), height (2), width (2).
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_jpeg_pixel_bomb_names_pillow_limit() -> None:
    # The configured limit counts a JPEG after reduced-scale decoding, which
    # Pillow's guard prevents here, so the limit it failed is Pillow's.
    data = jpeg_header_claiming(20000, 20000)

    with pytest.raises(ImageTooManyPixelsError) as caught:
        prepare_image(data, ImageLimits())

    assert caught.value.params["megapixels"] == "400.0"
    assert caught.value.params["max_megapixels"] == "179.0"
    assert "20000x20000" in str(caught.value)


def gif_with_frame_over_canvas(width: int, height: int) -> bytes:
    """A 10x10 GIF whose only frame claims `width` x `height`, which Pillow finds only when it reads the frame."""
    image = Image.new("P", (10, 10))
    data = encode(image, "GIF")
    descriptor = data.index(b"\x2c\x00\x00\x00\x00\x0a\x00\x0a\x00")
    return data[: descriptor + 5] + struct.pack("<HH", width, height) + data[descriptor + 9 :]


def test_gif_frame_over_canvas_is_pixel_error() -> None:
    data = gif_with_frame_over_canvas(20000, 20000)

    with pytest.raises(ImageTooManyPixelsError) as caught:
        prepare_image(data, ImageLimits())

    assert caught.value.params["over_megapixels"] == "179.0"
    assert caught.value.params["max_megapixels"] == "50.0"
    assert "images.max_pixels" in str(caught.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_limit_names_the_dimensions() -> None:
    data = png_header_only(12000, 9000)

    with pytest.raises(ImageTooManyPixelsError) as caught:
        prepare_image(data, ImageLimits(max_pixels=100_000_000))

    assert caught.value.params["width"] == 12000
    assert caught.value.params["height"] == 9000
    assert caught.value.params["megapixels"] == "108.0"
    assert "12000x9000" in str(caught.value)
    assert "images.max_pixels" in str(caught.value)


def test_pixel_limit_comes_from_settings() -> None:
    data = encode(noisy_photo((1200, 1000)), "JPEG")

    with pytest.raises(ImageTooManyPixelsError):
        prepare_image(data, ImageSettings(max_pixels=1_000_000).limits())

    assert prepare_image(data, ImageSettings(max_pixels=1_200_000).limits()).report.source_size == (1200, 1000)


def test_pixel_limit_counts_reduced_jpeg_decode() -> None:
    # 60 megapixels in the header, over the 50 megapixel default, but libjpeg decodes it at 1/4.
    data = encode(Image.new("L", (10000, 6000), 128), "JPEG")

    prepared = prepare_image(data, ImageLimits())

    assert prepared.report.source_size == (10000, 6000)
    assert prepared.report.decode_scale == 4
    assert prepared.report.final_size == (1568, 941)
    with pytest.raises(ImageTooManyPixelsError):
        prepare_image(encode(Image.new("L", (10000, 6000), 128), "PNG"), ImageLimits())


def test_truncated_jpeg_is_named_truncated() -> None:
    data = encode(noisy_photo((400, 300)), "JPEG", quality=90)

    with pytest.raises(ImageTruncatedError) as caught:
        prepare_image(data[: len(data) // 2], ImageLimits())

    assert caught.value.code == "image_truncated"
    assert caught.value.params["format"] == "JPEG"


def test_jpeg_with_thousands_of_scans_is_rejected() -> None:
    data = encode(noisy_photo((40, 40)), "JPEG", progressive=True)
    assert 2 < data.count(b"\xff\xda") < 20
    bomb = data + b"\xff\xda" * 1000

    with pytest.raises(ImageCorruptError) as caught:
        prepare_image(bomb, ImageLimits())

    assert "scans" in caught.value.params["reason"]
    assert prepare_image(data, ImageLimits()).report.final_size == (40, 40)


def test_baseline_jpeg_with_repeated_scan_is_corrupt() -> None:
    # A baseline file skips the scan count, so libjpeg must be what rejects a second scan.
    data = encode(noisy_photo((200, 150)), "JPEG", quality=90)
    first_scan = data.index(b"\xff\xda")
    repeated = data[:-2] + data[first_scan:-2] * 200 + b"\xff\xd9"

    with pytest.raises(ImageCorruptError) as caught:
        prepare_image(repeated, ImageLimits())

    assert caught.value.params["format"] == "JPEG"


def test_non_interleaved_jpeg_scans_are_counted() -> None:
    # A first scan with fewer components than the frame lets libjpeg read more scans.
    data = bytearray(encode(noisy_photo((40, 40)), "JPEG", quality=90))
    first_scan = data.index(b"\xff\xda")
    assert data[first_scan + 4] == 3
    data[first_scan + 4] = 1
    bomb = bytes(data[:-2]) + b"\xff\xda" * 1000 + b"\xff\xd9"

    with pytest.raises(ImageCorruptError) as caught:
        prepare_image(bomb, ImageLimits())

    assert "1001 scans" in caught.value.params["reason"]


def test_damaged_png_header_is_corrupt() -> None:
    data = bytearray(encode(Image.new("RGB", (20, 20), RED), "PNG"))
    data[20] ^= 0xFF  # inside IHDR, so its CRC no longer matches

    with pytest.raises(ImageCorruptError) as caught:
        prepare_image(bytes(data), ImageLimits())

    assert caught.value.code == "image_corrupt"
    assert caught.value.params["format"] == "PNG"
    assert "BytesIO" not in str(caught.value)


def test_text_file_named_png_is_text(tmp_path: Path) -> None:
    path = tmp_path / "holiday.png"
    path.write_text("Dear diary,\n今天天气很好。\n", encoding="utf-8")

    with pytest.raises(NotAnImageError) as caught:
        prepare_image(path.read_bytes(), ImageLimits())

    assert caught.value.params["kind"] == "a text file"
    assert caught.value.params["kind_zh"] == "文本文件"
    assert "a text file, not an image" in str(caught.value)


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 30, "a ZIP archive (or an Office document)"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 20, "a WAV audio file"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "an MP4/MOV video"),
        (b"", "an empty file"),
        (bytes(range(256)), "in a format that is not an image Parley knows"),
    ],
)
def test_non_image_is_named_by_content(head: bytes, kind: str) -> None:
    with pytest.raises(NotAnImageError) as caught:
        prepare_image(head, ImageLimits())

    assert caught.value.params["kind"] == kind


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG vector image"),
        (b"8BPS\x00\x01" + b"\x00" * 40, "a Photoshop (PSD) file"),
    ],
)
def test_unaccepted_image_format_is_named(data: bytes, kind: str) -> None:
    with pytest.raises(ImageFormatNotAcceptedError) as caught:
        prepare_image(data, ImageLimits())

    assert caught.value.params["kind"] == kind


def test_gps_exif_is_removed() -> None:
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 29.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    data = encode(noisy_photo((320, 240)), "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert "gps" in prepared.report.metadata_removed
    assert "exif" in prepared.report.metadata_removed
    assert "exif" not in result.info
    assert not result.getexif()
    assert b"PhoneMaker" not in prepared.part.data
    assert b"Exif\x00\x00" not in prepared.part.data


def test_data_after_jpeg_end_is_not_sent() -> None:
    data = encode(noisy_photo((60, 40)), "JPEG") + b"PK\x03\x04hidden-archive-payload"

    prepared = prepare_image(data, ImageLimits())

    assert b"hidden-archive-payload" not in prepared.part.data
    assert decode(prepared.part.data).size == (60, 40)


def test_jpeg_comment_is_removed() -> None:
    data = encode(noisy_photo((120, 90)), "JPEG", comment=b"owner: Jane Doe")

    prepared = prepare_image(data, ImageLimits())

    assert "comment" in prepared.report.metadata_removed
    assert b"Jane Doe" not in prepared.part.data
    assert "comment" not in decode(prepared.part.data).info


def test_xmp_and_png_text_are_removed() -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home, 12 Rue Example")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>secret-xmp</x:xmpmeta>")
    data = encode(Image.new("RGB", (50, 50), GREEN), "PNG", pnginfo=info)

    prepared = prepare_image(data, ImageLimits())

    assert "text" in prepared.report.metadata_removed
    assert "xmp" in prepared.report.metadata_removed
    assert b"Rue Example" not in prepared.part.data
    assert b"secret-xmp" not in prepared.part.data
    assert decode(prepared.part.data).info.get("Comment") is None


def swapped_primaries_profile() -> bytes:
    """An RGB ICC profile whose red and blue primaries trade places: stored red means blue."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    tag_count = struct.unpack_from(">I", profile, 128)[0]
    entries = {}
    for index in range(tag_count):
        offset = 132 + 12 * index
        signature = bytes(profile[offset : offset + 4])
        entries[signature] = offset
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    red_pointer = bytes(profile[red + 4 : red + 12])
    profile[red + 4 : red + 12] = profile[blue + 4 : blue + 12]
    profile[blue + 4 : blue + 12] = red_pointer

    # The description must not say sRGB, or the pipeline rightly skips the conversion.
    description = entries.get(b"desc")
    assert description is not None
    return bytes(profile).replace(b"sRGB", b"swap").replace("sRGB".encode("utf-16-be"), "swap".encode("utf-16-be"))


def test_icc_profile_is_applied_then_dropped() -> None:
    data = encode(Image.new("RGB", (64, 64), RED), "PNG", icc_profile=swapped_primaries_profile())

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert near(result.getpixel((10, 10)), BLUE, tolerance=30)
    assert "icc_profile" not in result.info
    assert "icc" in prepared.report.metadata_removed
    assert prepared.report.colour_profile != ""


def test_srgb_profile_is_dropped_without_change() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.new("RGB", (64, 64), (200, 100, 50)), "PNG", icc_profile=srgb)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert result.getpixel((1, 1)) == (200, 100, 50)
    assert "icc_profile" not in result.info


def test_large_jpeg_decodes_at_reduced_scale() -> None:
    data = encode(noisy_photo((6000, 4000)), "JPEG", quality=80)

    prepared = prepare_image(data, ImageLimits(max_side=2048))

    assert prepared.report.decode_scale == 2
    assert prepared.report.downscaled
    assert prepared.report.final_size == (2048, 1365)
    assert decode(prepared.part.data).size == (2048, 1365)


def test_default_limits_decode_photo_at_quarter() -> None:
    data = encode(noisy_photo((6000, 4000)), "JPEG", quality=80)

    prepared = prepare_image(data, ImageLimits())

    # 1500 is within 10% of the 1568 default, so libjpeg decodes at 1/4 and nothing is resized.
    assert prepared.report.decode_scale == 4
    assert prepared.report.final_size == (1500, 1000)
    assert prepared.report.downscaled


def test_lossless_photo_is_sent_as_jpeg() -> None:
    data = encode(noisy_photo((800, 600)), "PNG")

    prepared = prepare_image(data, ImageLimits())

    assert prepared.report.source_format == "PNG"
    assert prepared.part.mime == "image/jpeg"
    assert prepared.report.final_size == (800, 600)


def test_byte_limit_shrinks_until_it_fits() -> None:
    data = encode(noisy_photo((1600, 1200)), "PNG")

    prepared = prepare_image(data, ImageLimits(max_side=1600, max_bytes=60_000))

    assert prepared.report.final_bytes <= 60_000
    assert len(prepared.part.data) == prepared.report.final_bytes
    assert prepared.part.mime == "image/jpeg"
    assert max(prepared.report.final_size) < 1600


def test_impossible_byte_limit_is_reported() -> None:
    data = encode(noisy_photo((300, 300)), "JPEG")

    with pytest.raises(ImageOverByteLimitError) as caught:
        prepare_image(data, ImageLimits(max_bytes=200))

    assert caught.value.params["limit_kb"] == 0.2
    assert caught.value.params["width"] <= 64


def test_upload_size_limit_applies_before_decoding() -> None:
    data = encode(noisy_photo((300, 300)), "PNG")

    with pytest.raises(ImageFileTooLargeError) as caught:
        prepare_image(data, ImageLimits(max_upload_bytes=1000))

    assert caught.value.http_status == 413
    assert caught.value.params["limit_mb"] == 0.0


def test_small_lossless_image_stays_png() -> None:
    screenshot = Image.new("RGB", (300, 200), WHITE)
    screenshot.paste((0, 0, 0), (10, 10, 290, 20))
    data = encode(screenshot, "BMP")

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data)

    assert prepared.part.mime == "image/png"
    assert prepared.report.source_format == "BMP"
    assert result.getpixel((100, 15)) == (0, 0, 0)
    assert result.getpixel((100, 100)) == WHITE


def test_tiff_and_webp_are_accepted() -> None:
    for image_format in ("TIFF", "WEBP"):
        data = encode(Image.new("RGB", (30, 20), GREEN), image_format)

        prepared = prepare_image(data, ImageLimits())

        assert prepared.report.source_format == image_format
        assert decode(prepared.part.data).size == (30, 20)


def test_heic_is_accepted_and_upright() -> None:
    upright = marked_upright((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(upright.transpose(Image.Transpose.ROTATE_90), "HEIF", exif=exif.tobytes(), quality=95)

    prepared = prepare_image(data, ImageLimits())
    result = decode(prepared.part.data).convert("RGB")

    assert prepared.report.source_format == "HEIF"
    assert result.size == (200, 100)
    assert near(result.getpixel((15, 15)), RED, tolerance=60)
    assert near(result.getpixel((185, 85)), GREEN, tolerance=60)
    assert prepared.report.orientation == 6


def test_image_part_hash_is_of_sent_bytes() -> None:
    data = encode(noisy_photo((100, 100)), "JPEG")

    first = prepare_image(data, ImageLimits())
    second = prepare_image(data, ImageLimits())

    assert first.part.sha256 == second.part.sha256
    assert first.part.data == second.part.data
    other = prepare_image(encode(noisy_photo((101, 100)), "JPEG"), ImageLimits())
    assert other.part.sha256 != first.part.sha256


async def test_pipeline_runs_off_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = ImagePipeline(ImageSettings(workers=1))
    data = encode(noisy_photo((500, 400)), "JPEG")

    try:
        with caplog.at_level(logging.INFO, logger="multimodal.images"):
            prepared = await pipeline.prepare(data)
    finally:
        pipeline.close()

    assert prepared.report.final_size == (500, 400)
    records = [record for record in caplog.records if record.getMessage().startswith("image prepared")]
    assert len(records) == 1
    assert records[0].threadName.startswith("parley-image")


def test_every_error_code_has_both_languages() -> None:
    for code, templates in MESSAGES.items():
        assert set(templates) == {"en", "zh-CN"}, code
        assert templates["en"] != templates["zh-CN"], code

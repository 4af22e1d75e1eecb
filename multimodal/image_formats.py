"""Image formats the pipeline reads, and identification of the files it rejects.

Files are identified by their first bytes, never by their name: a text file
named photo.png is reported as text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PIL import features

logger = logging.getLogger(__name__)


def _register_heif() -> bool:
    """Register the HEIC/HEIF opener from pillow-heif, if it is installed."""
    try:
        import pillow_heif
    except ImportError:
        logger.info("pillow-heif is not installed; HEIC/HEIF images will be rejected")
        return False

    pillow_heif.register_heif_opener()
    return True


HEIF_AVAILABLE = _register_heif()

# Pillow format names of the decoders the pipeline opens files with. The JPEG
# decoder also opens MPO files (a JPEG with extra frames, written by many phone
# cameras), whose `image.format` is then "MPO".
ACCEPTED_FORMATS: tuple[str, ...] = (
    "JPEG",
    "PNG",
    "WEBP",
    "GIF",
    "BMP",
    "TIFF",
    *(("HEIF",) if HEIF_AVAILABLE else ()),
    *(("AVIF",) if features.check("avif") else ()),
)

# Sources whose compression already lost detail; re-encoding them as PNG would
# only make the file larger, so they leave the pipeline as JPEG.
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "HEIF", "AVIF"})


@dataclass(frozen=True, slots=True)
class FileKind:
    """A description of a file's type for the user: `en` is "a PDF document", `zh` is "PDF 文档".

    `image_format` is the Pillow format name of an image the pipeline
    accepts ("JPEG", "HEIF", ...), and empty for images it does not.
    """

    en: str
    zh: str
    is_image: bool = False
    image_format: str = ""


def _image(name: str, image_format: str = "") -> FileKind:
    accepted = image_format if image_format in ACCEPTED_FORMATS else ""
    return FileKind(f"a {name} image", f"{name} 图片", is_image=True, image_format=accepted)


# Signatures at offset 0, checked in order. Image formats come first so that
# a damaged PNG is reported as a damaged PNG, not as an unknown file.
_SIGNATURES: tuple[tuple[bytes, FileKind], ...] = (
    (b"\xff\xd8\xff", _image("JPEG", "JPEG")),
    (b"\x89PNG\r\n\x1a\n", _image("PNG", "PNG")),
    (b"GIF87a", _image("GIF", "GIF")),
    (b"GIF89a", _image("GIF", "GIF")),
    (b"II*\x00", _image("TIFF", "TIFF")),
    (b"MM\x00*", _image("TIFF", "TIFF")),
    (b"8BPS", FileKind("a Photoshop (PSD) file", "Photoshop（PSD）文件", is_image=True)),
    (b"\x00\x00\x01\x00", FileKind("an icon (ICO) file", "图标（ICO）文件", is_image=True)),
    (b"\x00\x00\x00\x0cjP  ", _image("JPEG 2000")),
    (b"\xff\x4f\xff\x51", _image("JPEG 2000")),
    (b"qoif", _image("QOI")),
    (b"\xff\x0a", _image("JPEG XL")),
    (b"\x00\x00\x00\x0cJXL ", _image("JPEG XL")),
    (b"%PDF", FileKind("a PDF document", "PDF 文档")),
    (b"%!PS", FileKind("a PostScript file", "PostScript 文件")),
    (b"PK\x03\x04", FileKind("a ZIP archive (or an Office document)", "ZIP 压缩包（或 Office 文档）")),
    (b"\x1f\x8b", FileKind("a gzip archive", "gzip 压缩包")),
    (b"Rar!", FileKind("a RAR archive", "RAR 压缩包")),
    (b"7z\xbc\xaf\x27\x1c", FileKind("a 7-Zip archive", "7-Zip 压缩包")),
    (b"\xd0\xcf\x11\xe0", FileKind("an old Office document", "旧版 Office 文档")),
    (b"\x7fELF", FileKind("a program", "程序文件")),
    (b"ID3", FileKind("an MP3 audio file", "MP3 音频")),
    (b"OggS", FileKind("an Ogg audio file", "Ogg 音频")),
    (b"fLaC", FileKind("a FLAC audio file", "FLAC 音频")),
    (b"\x1aE\xdf\xa3", FileKind("a WebM/Matroska video", "WebM/Matroska 视频")),
    (b"SQLite format 3", FileKind("an SQLite database", "SQLite 数据库")),
)

# ISO base media files ("....ftyp<brand>") hold HEIC/AVIF images as well as video.
_FTYP_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})
_FTYP_AUDIO_BRANDS = frozenset({b"M4A ", b"M4B "})

_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

_UNKNOWN = FileKind("in a format that is not an image Parley knows", "无法识别格式的文件")
_TEXT = FileKind("a text file", "文本文件")
_EMPTY = FileKind("an empty file", "空文件")


def identify(head: bytes) -> FileKind:
    """Tell what a file is from its first bytes (64 are plenty, 4096 help text detection)."""
    if not head:
        return _EMPTY

    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind

    if _is_bmp(head):
        return _image("BMP", "BMP")

    riff = _identify_riff(head)
    if riff is not None:
        return riff

    ftyp = _identify_ftyp(head)
    if ftyp is not None:
        return ftyp

    markup = _identify_markup(head)
    if markup is not None:
        return markup

    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return FileKind("an MP3 audio file", "MP3 音频")

    if _looks_like_text(head):
        return _TEXT
    if head.startswith(b"MZ"):
        return FileKind("a program", "程序文件")
    return _UNKNOWN


def _is_bmp(head: bytes) -> bool:
    # "BM" alone also starts plain text ("BMW ..."), so the DIB header size must be a known one.
    if not head.startswith(b"BM") or len(head) < 18:
        return False
    return int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES


def _identify_riff(head: bytes) -> FileKind | None:
    if not head.startswith(b"RIFF") or len(head) < 12:
        return None
    form = head[8:12]
    if form == b"WEBP":
        return _image("WebP", "WEBP")
    if form == b"WAVE":
        return FileKind("a WAV audio file", "WAV 音频")
    if form == b"AVI ":
        return FileKind("an AVI video", "AVI 视频")
    return FileKind("a RIFF file", "RIFF 文件")


def _identify_ftyp(head: bytes) -> FileKind | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in _FTYP_IMAGE_BRANDS:
        if brand.startswith(b"avi"):
            return _image("AVIF", "AVIF")
        return _image("HEIC", "HEIF")
    if brand in _FTYP_AUDIO_BRANDS:
        return FileKind("an M4A audio file", "M4A 音频")
    return FileKind("an MP4/MOV video", "MP4/MOV 视频")


def _identify_markup(head: bytes) -> FileKind | None:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1024].lower()
    if b"<svg" in start:
        return FileKind("an SVG vector image", "SVG 矢量图", is_image=True)
    if start.startswith((b"<!doctype html", b"<html")):
        return FileKind("an HTML page", "HTML 网页")
    return None


def _looks_like_text(head: bytes) -> bool:
    """Tell whether `head` reads as UTF-8 (or UTF-16 with a BOM) text without control bytes."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False

    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character; only that is forgiven.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")

    controls = sum(1 for char in text if ord(char) < 32 and char not in "\t\r\n\f")
    return controls == 0

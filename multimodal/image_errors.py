"""Errors of the image input path, with their user-facing messages.

Each class has a stable `code`; the UI looks the code up in `MESSAGES` and
formats the template with the error's `params`, so a Chinese user reads the
reason in Chinese. `str(error)` stays English for logs and API clients.
"""

from __future__ import annotations

from typing import Any

from backends.errors import ImageNotSupportedError, InputTooLargeError, InvalidInputError


class NotAnImageError(InvalidInputError):
    """The content is not an image at all (a PDF, a text file, audio, ...)."""

    code = "not_an_image"
    fix = "Send a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC image."


class ImageFormatNotAcceptedError(InvalidInputError):
    """The content is an image, but in a format the pipeline does not read (PSD, ICO, SVG, ...)."""

    code = "image_format_not_accepted"
    fix = "Save or export the image as PNG or JPEG and send that."


class ImageCorruptError(InvalidInputError):
    code = "image_corrupt"
    fix = "The file is damaged; open it in an image viewer, save it again as PNG or JPEG and send that."


class ImageTruncatedError(ImageCorruptError):
    code = "image_truncated"
    fix = "The file is cut off; send the whole file again."


class ImageTooManyPixelsError(InputTooLargeError):
    """The image has more pixels than `images.max_pixels`, or than Pillow's own guard allows.

    The header check runs before anything is decoded. Pillow's guard may
    also trip later (a GIF frame larger than its canvas), and the error then has
    `over_megapixels` in place of the size.
    """

    code = "image_too_many_pixels"
    fix = "Send a smaller image, or raise images.max_pixels in the config."


class ImageFileTooLargeError(InputTooLargeError):
    code = "image_file_too_large"
    fix = "Send a smaller file, or raise images.max_upload_mb in the config."


class ImageOverByteLimitError(InputTooLargeError):
    """Even a small re-encoded version does not fit the model's `max_image_bytes`."""

    code = "image_over_byte_limit"
    fix = "Raise max_image_bytes for this model in the config, or send a simpler image."


class TooManyImagesError(InputTooLargeError):
    code = "too_many_images"
    fix = "Send fewer images in one request, or raise images.max_images in the config."


# Templates by error code and locale; `{name}` fields come from `error.params`.
# A "code+param" key is a variant the UI picks only when the error has that param.
MESSAGES: dict[str, dict[str, str]] = {
    "not_an_image": {
        "en": "That file is {kind}, not an image. Send a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC image.",
        "zh-CN": "这个文件是{kind_zh}，不是图片。请发送 JPEG、PNG、WebP、GIF、BMP、TIFF 或 HEIC 图片。",
    },
    "image_format_not_accepted": {
        "en": "That file is {kind}, which Parley does not read. Export it as PNG or JPEG and send that.",
        "zh-CN": "这个文件是{kind_zh}，Parley 无法读取。请导出为 PNG 或 JPEG 后再发送。",
    },
    "image_corrupt": {
        "en": "The {format} image could not be decoded ({reason}). Save it again as PNG or JPEG and send that.",
        "zh-CN": "无法解码这张 {format} 图片（{reason}）。请重新保存为 PNG 或 JPEG 后再发送。",
    },
    "image_truncated": {
        "en": "The {format} image is cut off: the file ends before the image data does. Send the whole file again.",
        "zh-CN": "这张 {format} 图片不完整：文件在图像数据结束前就断了。请重新发送完整的文件。",
    },
    "image_too_many_pixels": {
        "en": "The image has {megapixels} megapixels; the limit is {max_megapixels} megapixels. Send a smaller image.",
        "zh-CN": "图片有 {megapixels} 百万像素，超过了 {max_megapixels} 百万像素的上限。请发送更小的图片。",
    },
    # The variant for Pillow's guard tripping on a size no header states, so only a lower bound is known.
    "image_too_many_pixels+over_megapixels": {
        "en": "The image has more than {over_megapixels} megapixels; the limit is {max_megapixels} megapixels (images.max_pixels). Send a smaller image.",
        "zh-CN": "图片超过 {over_megapixels} 百万像素，超过了 {max_megapixels} 百万像素的上限（images.max_pixels）。请发送更小的图片。",
    },
    "image_file_too_large": {
        "en": "The file is {size_mb} MB; the limit is {limit_mb} MB. Send a smaller file.",
        "zh-CN": "文件大小为 {size_mb} MB，超过了 {limit_mb} MB 的上限。请发送更小的文件。",
    },
    "image_over_byte_limit": {
        "en": "Even at {width}×{height} the image takes {size_kb} KB; the limit is {limit_kb} KB per image. Raise max_image_bytes for the model or send a simpler image.",
        "zh-CN": "即使缩小到 {width}×{height}，图片仍有 {size_kb} KB；上限是每张图片 {limit_kb} KB。请调高该模型的 max_image_bytes，或发送更简单的图片。",
    },
    "too_many_images": {
        "en": "The conversation has {count} images; the limit is {limit} per request. Start a new conversation or send fewer images.",
        "zh-CN": "对话中有 {count} 张图片，超过了每次请求 {limit} 张的上限。请开始新的对话，或发送更少的图片。",
    },
    # A variant of the generic "image_not_supported" text, used when the error names the vision models.
    "image_not_supported+vision_models": {
        "en": "Model {model_name} cannot see images. Models that can: {vision_models}. Pick one of them, or remove the image.",
        "zh-CN": "模型 {model_name} 无法识别图片。可以识别图片的模型：{vision_models}。请选择其中之一，或移除图片。",
    },
    # The variant for a config without any vision model: naming "the models that can" would list none.
    "image_not_supported+blind_model": {
        "en": "Model {blind_model} cannot see images, and no configured model can. Remove the image or add a vision model to the config.",
        "zh-CN": "模型 {blind_model} 无法识别图片，已配置的模型也都无法识别图片。请移除图片，或在配置中添加一个支持图片的模型。",
    },
}


def image_not_supported(model: str, vision_models: list[str], **params: Any) -> ImageNotSupportedError:
    """Build the error for an image sent to `model`, naming the models that can see images, if any.

    `params` go into the error's params as they are, such as the request field at fault.
    """
    detail = f"model {model!r} cannot see images"
    if not vision_models:
        fix = "No configured model can see images; remove the image or add a vision model to the config."
        return ImageNotSupportedError(detail, model=model, fix=fix, blind_model=model, **params)

    names = ", ".join(vision_models)
    fix = f"Pick a model that can see images ({names}), or remove the image."
    return ImageNotSupportedError(detail, model=model, fix=fix, model_name=model, vision_models=names, **params)


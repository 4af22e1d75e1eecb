"""UI strings of the Image tab and of the image errors, in English and Chinese.

`ui.i18n` merges `IMAGE_STRINGS` into its `STRINGS`; keys follow the same
rules (error messages are keyed "error.<code>", variants "error.<code>+<param>").
"""

from __future__ import annotations

from multimodal.image_errors import MESSAGES

IMAGE_STRINGS: dict[str, dict[str, str]] = {
    "image.intro": {
        "en": "Upload an image to see exactly what a model will receive: Parley turns it upright, scales it to the model's limits, converts its colours to sRGB and removes all metadata (including GPS location).",
        "zh-CN": "上传一张图片，查看模型实际收到的内容：Parley 会把图片转正、按模型上限缩放、把颜色转换为 sRGB，并删除所有元数据（包括 GPS 位置）。",
    },
    "image.upload": {"en": "Image file", "zh-CN": "图片文件"},
    "image.model": {"en": "Model", "zh-CN": "模型"},
    "image.model_info": {
        "en": "Limits come from this model; 👁 marks models that can see images.",
        "zh-CN": "尺寸上限取自该模型；👁 表示可以识别图片的模型。",
    },
    "image.preview": {"en": "What the model receives", "zh-CN": "模型收到的图片"},
    "image.report": {"en": "What was done", "zh-CN": "处理说明"},
    "image.question": {"en": "Question about the image", "zh-CN": "关于图片的问题"},
    "image.question_placeholder": {"en": "What is in this picture?", "zh-CN": "这张图片里有什么？"},
    "image.ask": {"en": "Ask", "zh-CN": "提问"},
    "image.send_to_chat": {"en": "Send to chat", "zh-CN": "发送到对话"},
    "image.answer": {"en": "Answer", "zh-CN": "回答"},
    "image.need_image": {"en": "Upload an image first.", "zh-CN": "请先上传一张图片。"},
    "image.default_question": {"en": "Describe this image.", "zh-CN": "请描述这张图片。"},
    # The report table.
    "image.col.original": {"en": "Original", "zh-CN": "原图"},
    "image.col.sent": {"en": "Sent to the model", "zh-CN": "发送给模型"},
    "image.row.format": {"en": "Format", "zh-CN": "格式"},
    "image.row.size": {"en": "Dimensions", "zh-CN": "尺寸"},
    "image.row.bytes": {"en": "File size", "zh-CN": "文件大小"},
    "image.row.mode": {"en": "Colour mode", "zh-CN": "颜色模式"},
    "image.quality": {"en": "quality {quality}", "zh-CN": "质量 {quality}"},
    "image.changes": {"en": "Changes", "zh-CN": "改动"},
    "image.change.rotated": {
        "en": "Turned upright (EXIF orientation {orientation}).",
        "zh-CN": "已按 EXIF 方向 {orientation} 转正。",
    },
    "image.change.draft": {
        "en": "Decoded at 1/{scale} size, which is faster and uses less memory.",
        "zh-CN": "以 1/{scale} 尺寸解码，更快且更省内存。",
    },
    "image.change.downscaled": {
        "en": "Scaled down to fit a long side of {max_side} px.",
        "zh-CN": "已缩小到长边不超过 {max_side} 像素。",
    },
    "image.change.mode": {"en": "Colour mode {source} converted to {final}.", "zh-CN": "颜色模式从 {source} 转换为 {final}。"},
    "image.change.profile": {
        "en": "Colours converted from the embedded profile “{profile}” to sRGB.",
        "zh-CN": "颜色已从内嵌的配置文件“{profile}”转换为 sRGB。",
    },
    "image.change.transparency_kept": {
        "en": "Transparency kept, so the image is sent as PNG.",
        "zh-CN": "保留了透明度，因此以 PNG 格式发送。",
    },
    "image.change.transparency_flattened": {
        "en": "Transparent areas filled with white for JPEG.",
        "zh-CN": "透明区域已填充为白色，以 JPEG 格式发送。",
    },
    "image.change.opaque_alpha": {
        "en": "An alpha channel without any transparency was dropped.",
        "zh-CN": "删除了没有任何透明像素的 Alpha 通道。",
    },
    "image.change.first_frame": {
        "en": "Animated image: only the first frame is sent.",
        "zh-CN": "动图：只发送第一帧。",
    },
    "image.change.metadata": {"en": "Metadata removed: {names}.", "zh-CN": "已删除元数据：{names}。"},
    "image.change.reencoded": {
        "en": "Re-encoded as {format}; nothing else needed changing.",
        "zh-CN": "已重新编码为 {format}；无需其他改动。",
    },
    "image.prepared_in": {"en": "Prepared in {ms} ms.", "zh-CN": "处理用时 {ms} 毫秒。"},
    # Names of metadata kinds in the report.
    "image.meta.exif": {"en": "EXIF (camera data)", "zh-CN": "EXIF（相机信息）"},
    "image.meta.gps": {"en": "GPS location", "zh-CN": "GPS 位置"},
    "image.meta.xmp": {"en": "XMP", "zh-CN": "XMP"},
    "image.meta.iptc": {"en": "IPTC", "zh-CN": "IPTC"},
    "image.meta.icc": {"en": "ICC colour profile", "zh-CN": "ICC 颜色配置文件"},
    "image.meta.comment": {"en": "comment", "zh-CN": "注释"},
    "image.meta.text": {"en": "text chunks", "zh-CN": "文本块"},
}

# The image errors' own templates, keyed the way ui.i18n.translate_error looks them up.
IMAGE_STRINGS.update({f"error.{code}": texts for code, texts in MESSAGES.items()})

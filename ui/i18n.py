"""Every string the UI shows, in English and Simplified Chinese.

Component labels go through `gr.I18n` (built by `build_i18n()`), so the
browser picks the language. Text the server writes into chat messages
(stats lines, error messages, notices) cannot use `gr.I18n`, so handlers
pick the language from the request's Accept-Language header
(`language_from_request()`) and call `translate()`.

To add strings, add entries to `STRINGS` with both "en" and "zh-CN" text.
Error messages are keyed "error.<code>" after `ParleyError.code`; a key may
have variants "error.<code>+<param>" that are used when the error carries
that param (for example the limit of an input that is too large).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import gradio as gr

from backends.errors import ParleyError
from ui.image_i18n import IMAGE_STRINGS
from ui.workbench_i18n import WORKBENCH_STRINGS

ENGLISH = "en"
CHINESE = "zh-CN"
LANGUAGES = (ENGLISH, CHINESE)

# Browser locales that select Chinese. The frontend matches "zh-TW" to the
# "zh" table too, so every Chinese locale gets Simplified Chinese.
CHINESE_LOCALES = ("zh", "zh-CN", "zh-Hans")

STRINGS: dict[str, dict[str, str]] = {
    # The page and its tabs.
    "app.title": {"en": "Parley", "zh-CN": "Parley"},
    "tab.chat": {"en": "Chat", "zh-CN": "对话"},
    "tab.voice": {"en": "Voice", "zh-CN": "语音"},
    "tab.image": {"en": "Image", "zh-CN": "图片"},
    "tab.scenarios": {"en": "Scenarios", "zh-CN": "场景"},
    "tab.compare": {"en": "Compare", "zh-CN": "对比"},
    "tab.batch": {"en": "Batch", "zh-CN": "批量"},
    # The chat tab's components.
    "chat.chatbot": {"en": "Conversation", "zh-CN": "对话记录"},
    "chat.placeholder": {
        "en": "Type a message, or attach an image for a vision model. Enter sends, Shift+Enter adds a line.",
        "zh-CN": "输入消息，或为支持图片的模型附上一张图片。按 Enter 发送，Shift+Enter 换行。",
    },
    "chat.input": {"en": "Message", "zh-CN": "消息"},
    "chat.stop": {"en": "Stop", "zh-CN": "停止"},
    "chat.clear": {"en": "Clear", "zh-CN": "清空"},
    "chat.model": {"en": "Model", "zh-CN": "模型"},
    "chat.model_legend": {
        "en": "👁 can see images · 🧠 shows its reasoning",
        "zh-CN": "👁 可识别图片 · 🧠 展示推理过程",
    },
    "chat.system_prompt": {"en": "System prompt", "zh-CN": "系统提示词"},
    "chat.system_prompt_placeholder": {
        "en": "Optional instructions sent before the conversation",
        "zh-CN": "可选：在对话之前发送给模型的指令",
    },
    "chat.settings": {"en": "Model and sampling", "zh-CN": "模型与采样"},
    "chat.temperature": {"en": "Temperature", "zh-CN": "温度（temperature）"},
    "chat.temperature_info": {
        "en": "Higher is more varied, lower is more predictable.",
        "zh-CN": "越高越多样，越低越稳定。",
    },
    "chat.top_p": {"en": "Top-p", "zh-CN": "Top-p（核采样）"},
    "chat.top_p_info": {
        "en": "Samples only from the most likely tokens whose probabilities add up to this value.",
        "zh-CN": "只从累计概率达到该值的最可能的词元中采样。",
    },
    "chat.max_tokens": {"en": "Max tokens", "zh-CN": "最大生成词元数"},
    "chat.max_tokens_info": {
        "en": "Upper limit on the length of each reply, in tokens.",
        "zh-CN": "每条回复的长度上限（词元数）。",
    },
    # Text written into chat messages by the server.
    "reply.thinking": {"en": "Thinking", "zh-CN": "思考过程"},
    "reply.waiting": {"en": "Waiting for {model}…", "zh-CN": "正在等待 {model}…"},
    "reply.streaming": {"en": "{model} is answering…", "zh-CN": "{model} 正在回答…"},
    "reply.stopped": {"en": "Stopped", "zh-CN": "已停止"},
    "reply.failed": {"en": "Failed: {message}", "zh-CN": "失败：{message}"},
    "reply.length": {
        "en": "Cut off at the max tokens limit",
        "zh-CN": "已达到最大生成词元数，回复被截断",
    },
    "reply.content_filter": {"en": "Cut off by the content filter", "zh-CN": "回复被内容过滤截断"},
    "reply.cached": {"en": "cached", "zh-CN": "来自缓存"},
    "reply.first_token": {"en": "first token {ms} ms", "zh-CN": "首字 {ms} 毫秒"},
    "reply.speed": {"en": "{rate} tokens/s", "zh-CN": "{rate} 词元/秒"},
    "reply.tokens": {
        "en": "{prompt} prompt + {completion} completion tokens",
        "zh-CN": "提示 {prompt} + 生成 {completion} 词元",
    },
    "reply.served_by": {"en": "Served by {who}", "zh-CN": "由 {who} 提供"},
    "reply.served_after": {"en": "after {failures}", "zh-CN": "此前失败：{failures}"},
    "reply.notices": {"en": "Notices", "zh-CN": "提示"},
    "reply.error_detail": {"en": "Details", "zh-CN": "详细信息"},
    "notice.retrying": {"en": "Retrying", "zh-CN": "正在重试"},
    "notice.falling_back": {"en": "Falling back", "zh-CN": "正在切换到备用模型"},
    "notice.cached": {"en": "Served from the cache", "zh-CN": "来自缓存"},
    "notice.interrupted": {"en": "Interrupted", "zh-CN": "已中断"},
    "notice.info": {"en": "Note", "zh-CN": "说明"},
    # Input checks in the chat tab.
    "input.too_long": {
        "en": "The message has {chars} characters, over the limit of {limit}. Shorten it or send it in parts.",
        "zh-CN": "消息有 {chars} 个字符，超过了 {limit} 个字符的上限。请缩短，或分几次发送。",
    },
    "input.image_unsupported_here": {
        "en": "Images cannot be sent from this chat. Remove the attachment or use the Image tab.",
        "zh-CN": "此对话无法发送图片。请移除附件，或使用“图片”标签页。",
    },
    "input.no_models": {
        "en": "No models are configured. Add a backend to the config file and start Parley again.",
        "zh-CN": "没有配置任何模型。请在配置文件中添加后端，然后重新启动 Parley。",
    },
    # The Voice tab and speech input in the chat textbox (ui.voice_tab).
    "voice.audio": {"en": "Recording", "zh-CN": "录音"},
    "voice.language": {"en": "Spoken language (also for recordings in the chat box)", "zh-CN": "说话的语言（也用于对话框中的录音）"},
    "voice.language.ui": {"en": "Same as the page", "zh-CN": "跟随界面语言"},
    "voice.language.auto": {"en": "Detect automatically", "zh-CN": "自动检测"},
    "voice.language.zh": {"en": "Chinese", "zh-CN": "中文"},
    "voice.language.en": {"en": "English", "zh-CN": "英文"},
    "voice.transcribe": {"en": "Transcribe", "zh-CN": "转写"},
    "voice.autosend": {
        "en": "Send chat box recordings right after transcribing",
        "zh-CN": "对话框中的录音转写后立即发送",
    },
    "voice.transcript": {"en": "Transcript (editable)", "zh-CN": "转写结果（可编辑）"},
    "voice.send": {"en": "Send to chat", "zh-CN": "发送到对话"},
    "voice.recent": {"en": "Recent recordings", "zh-CN": "最近的录音"},
    "voice.status.queued": {
        "en": "Waiting for the speech model: position {position} in the queue…",
        "zh-CN": "正在排队等待语音模型：第 {position} 位…",
    },
    "voice.status.loading": {"en": "Loading the speech model…", "zh-CN": "正在加载语音模型…"},
    "voice.status.transcribing": {"en": "Transcribing…", "zh-CN": "正在转写…"},
    "voice.status.done": {
        "en": "Language: {detected} ({probability}) · audio {duration} s · transcribed in {seconds} s",
        "zh-CN": "语言：{detected}（{probability}）· 音频 {duration} 秒 · 转写用时 {seconds} 秒",
    },
    "voice.status.done_set": {
        "en": "Language: {code} (set, not detected) · audio {duration} s · transcribed in {seconds} s",
        "zh-CN": "语言：{code}（已指定，未检测）· 音频 {duration} 秒 · 转写用时 {seconds} 秒",
    },
    "voice.status.stopped_early": {
        "en": "Transcription stopped at its time limit; the end of the recording is missing.",
        "zh-CN": "转写达到时间上限后停止，录音结尾部分未转写。",
    },
    "voice.need_audio": {"en": "Record or upload a clip first.", "zh-CN": "请先录音或上传音频。"},
    "voice.need_text": {"en": "The transcript is empty; transcribe or type something first.", "zh-CN": "转写结果为空，请先转写或输入文字。"},
    "voice.unavailable": {
        "en": "Speech-to-text is not set up on this server.",
        "zh-CN": "此服务器未启用语音转文字。",
    },
    # Errors, one per ParleyError code; "{where}" is prefixed by `translate_error()`.
    "error.internal_error": {
        "en": "Something went wrong inside Parley. Retry, and report the problem if it persists.",
        "zh-CN": "Parley 内部出错。请重试；如果问题持续出现，请报告。",
    },
    "error.upstream_unavailable": {
        "en": "The model server is unavailable. Retry in a moment or pick another model.",
        "zh-CN": "模型服务暂时不可用。请稍后重试，或换一个模型。",
    },
    "error.rate_limited": {
        "en": "The model server limited the request rate. Wait a moment and retry, or pick another model.",
        "zh-CN": "请求过于频繁，被模型服务限流。请稍等片刻再试，或换一个模型。",
    },
    "error.rate_limited+retry_after": {
        "en": "The model server limited the request rate. Wait {retry_after} s and retry, or pick another model.",
        "zh-CN": "请求过于频繁，被模型服务限流。请等待 {retry_after} 秒后重试，或换一个模型。",
    },
    "error.overloaded": {
        "en": "The model server is busy or failing. Retry later or pick another model.",
        "zh-CN": "模型服务繁忙或出现故障。请稍后重试，或换一个模型。",
    },
    "error.timeout": {
        "en": "The model server did not answer in time. Retry later or pick another model.",
        "zh-CN": "模型服务没有及时响应。请稍后重试，或换一个模型。",
    },
    "error.connection_failed": {
        "en": "Parley could not connect to the model server. Check that it is running and that its base_url in the config is right.",
        "zh-CN": "无法连接到模型服务。请检查服务是否在运行，以及配置中的 base_url 是否正确。",
    },
    "error.stream_incomplete": {
        "en": "The reply was cut off before its end. Retry it.",
        "zh-CN": "回复在结束前被中断。请重试。",
    },
    "error.bad_request": {
        "en": "The model server rejected the request. Check the request and its parameters.",
        "zh-CN": "模型服务拒绝了该请求。请检查请求内容及其参数。",
    },
    "error.auth_failed": {
        "en": "The model server rejected the API key. Check the key in the environment variable named by api_key_env.",
        "zh-CN": "模型服务拒绝了 API 密钥。请检查配置项 api_key_env 所指定的环境变量中的密钥。",
    },
    "error.auth_failed+api_key_env": {
        "en": "The model server rejected the API key. Check the key in the environment variable {api_key_env}.",
        "zh-CN": "模型服务拒绝了 API 密钥。请检查环境变量 {api_key_env} 中的密钥。",
    },
    "error.insufficient_balance": {
        "en": "The account has no balance left. Top it up with the provider, or pick another model.",
        "zh-CN": "账户余额不足。请到服务商处充值，或换一个模型。",
    },
    "error.not_found": {
        "en": "The model was not found. Pick one of the configured models.",
        "zh-CN": "找不到该模型。请从已配置的模型中选择。",
    },
    "error.not_found+models": {
        "en": "The model was not found. Pick one of the configured models: {models}.",
        "zh-CN": "找不到该模型。请从已配置的模型中选择：{models}。",
    },
    "error.context_too_long": {
        "en": "The conversation is longer than the model's context. Shorten it (clear the chat or undo turns) or pick a model with a larger context.",
        "zh-CN": "对话超出了模型的上下文长度。请缩短对话（清空或撤销几轮），或换一个上下文更长的模型。",
    },
    "error.image_not_supported": {
        "en": "This model cannot see images. Pick a model that can, or remove the image.",
        "zh-CN": "该模型无法识别图片。请换一个支持图片的模型，或移除图片。",
    },
    "error.content_filtered": {
        "en": "The provider's content filter blocked the reply. Rephrase the request.",
        "zh-CN": "回复被服务商的内容过滤拦截。请换一种说法。",
    },
    "error.invalid_input": {
        "en": "The input is invalid. Change it and try again.",
        "zh-CN": "输入无效。请修改后重试。",
    },
    "error.input_too_large": {
        "en": "The input is too large. Send something smaller; the limit is in the config.",
        "zh-CN": "输入过大。请发送更小的内容；上限在配置中设置。",
    },
    "error.input_too_large+limit": {
        "en": "The input is too large; the limit is {limit}. Send something smaller.",
        "zh-CN": "输入过大，上限为 {limit}。请发送更小的内容。",
    },
    "error.config_error": {
        "en": "The configuration is invalid. Fix the config file and start Parley again.",
        "zh-CN": "配置无效。请修正配置文件，然后重新启动 Parley。",
    },
    # Speech input (multimodal.speech_errors); params come from the error.
    "error.audio_empty": {
        "en": "The recording is empty. Record again or upload another file.",
        "zh-CN": "录音是空的。请重新录音或上传其他文件。",
    },
    "error.audio_corrupt": {
        "en": "The recording could not be decoded ({reason}). Upload it again or convert it to WAV or MP3.",
        "zh-CN": "无法解码这段录音（{reason}）。请重新上传，或转换为 WAV 或 MP3 后再试。",
    },
    "error.audio_truncated": {
        "en": "The recording is cut off: only {decoded_s} s of the stated {stated_s} s could be decoded. Upload the whole file again.",
        "zh-CN": "录音不完整：文件声明 {stated_s} 秒，只能解码 {decoded_s} 秒。请重新上传完整的文件。",
    },
    "error.audio_too_long": {
        "en": "The recording is {seconds} s long; the limit is {limit_s} s. Send a shorter recording.",
        "zh-CN": "录音长 {seconds} 秒，超过了 {limit_s} 秒的上限。请发送更短的录音。",
    },
    "error.audio_file_too_large": {
        "en": "The file is {size_mb} MB; the limit is {limit_mb} MB. Send a smaller file.",
        "zh-CN": "文件大小为 {size_mb} MB，超过了 {limit_mb} MB 的上限。请发送更小的文件。",
    },
    "error.no_speech": {
        "en": "No speech detected in the recording. Speak closer to the microphone and try again.",
        "zh-CN": "录音中没有检测到语音。请靠近麦克风再说一遍。",
    },
    "error.unsupported_language": {
        "en": "The speech model does not support the language “{language}”. Pick Chinese, English or automatic detection.",
        "zh-CN": "语音模型不支持语言“{language}”。请选择中文、英文或自动检测。",
    },
    "error.speech_queue_full": {
        "en": "{waiting} recordings are waiting to be transcribed. Try again in a minute.",
        "zh-CN": "已有 {waiting} 段录音在等待转写。请一分钟后再试。",
    },
    "error.speech_model_unavailable": {
        "en": "The speech model could not be loaded ({reason}). Check audio.model in the config and the server log.",
        "zh-CN": "语音模型无法加载（{reason}）。请检查配置中的 audio.model 和服务器日志。",
    },
    "error.circuit_open": {
        "en": "The model server failed repeatedly and is skipped for a while. Retry later or pick another model.",
        "zh-CN": "模型服务多次失败，暂时被跳过。请稍后重试，或换一个模型。",
    },
    "error.circuit_open+cause": {
        "en": "The model server is skipped for a while after {cause}. For 401 or 402, check the API key or the account balance; otherwise retry later or pick another model.",
        "zh-CN": "模型服务在出现 {cause} 后暂时被跳过。如果是 401 或 402，请检查 API 密钥或账户余额；否则请稍后重试，或换一个模型。",
    },
    "error.throttled": {
        "en": "Every server of this model is at its request rate limit. Wait a moment and retry, or raise requests_per_second in the config.",
        "zh-CN": "该模型的所有服务都已达到请求速率上限。请稍等片刻再试，或在配置中提高 requests_per_second。",
    },
    "error.unknown": {
        "en": "{detail}. {fix}",
        "zh-CN": "出错了（{code}）：{detail}。{fix}",
    },
}

# The Scenarios, Compare and Batch tabs keep their strings in their own table.
STRINGS.update(WORKBENCH_STRINGS)
# The Image tab and the image errors keep their strings in ui.image_i18n.
STRINGS.update(IMAGE_STRINGS)


def normalize_language(locale: str | None) -> str:
    """Map a browser locale such as "zh-Hans-CN" or "en-GB" to "zh-CN" or "en"."""
    if locale and locale.strip().lower().split("-")[0] == "zh":
        return CHINESE
    return ENGLISH


def language_from_header(accept_language: str | None) -> str:
    """Pick "zh-CN" or "en" from an Accept-Language header, by its q-values."""
    if not accept_language:
        return ENGLISH

    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language.split(",")):
        tag, _, options = item.strip().partition(";")
        quality = 1.0
        if options.strip().startswith("q="):
            try:
                quality = float(options.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag:
            # Equal q-values keep the header's order.
            ranked.append((-quality, position, tag))

    for negative_quality, _, tag in sorted(ranked):
        if negative_quality == 0:
            break
        base = tag.lower().split("-")[0]
        if base in ("zh", "en"):
            return normalize_language(tag)
    return ENGLISH


def language_from_request(request: gr.Request | None) -> str:
    """Pick the language for server-written text from the browser's Accept-Language header."""
    if request is None:
        return ENGLISH
    headers = getattr(request, "headers", None) or {}
    return language_from_header(headers.get("accept-language"))


def translate(key: str, language: str, **params: Any) -> str:
    """Return the text for `key` in `language` ("en" or "zh-CN"), formatted with `params`.

    A missing key raises KeyError, so a typo fails in tests rather than
    showing a raw key to users.
    """
    entry = STRINGS[key]
    text = entry.get(normalize_language(language), entry[ENGLISH])
    return text.format(**params) if params else text


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def user_error(message: str) -> gr.Error:
    """Return the gr.Error that shows `message` for a problem with the user's input.

    Gradio prints a traceback for every raised gr.Error unless told not to;
    input problems are expected, and the handler logs them in one line.
    """
    return gr.Error(message, print_exception=False)


def translate_error(error: ParleyError, language: str) -> str:
    """Return a translated sentence for `error` that says what failed and what to do.

    The text comes from "error.<code>" (or a variant that uses one of the
    error's params); an error whose code has no entry falls back to its
    English detail and fix, so nothing is ever hidden.
    """
    values: dict[str, Any] = {key: value for key, value in error.params.items() if value not in (None, "")}
    if error.retry_after is not None:
        values["retry_after"] = f"{error.retry_after:g}"

    key = f"error.{error.code}"
    candidates = [name for name in STRINGS if name.startswith(key + "+")]
    chosen = "error.unknown"
    for name in candidates:
        template = STRINGS[name][normalize_language(language)]
        if _fields(template) <= values.keys():
            chosen = name
            break
    else:
        # A template that needs a param the error lacks would raise KeyError.
        if key in STRINGS and _fields(STRINGS[key][normalize_language(language)]) <= values.keys():
            chosen = key

    if chosen == "error.unknown":
        values = {"detail": error.detail, "fix": error.fix, "code": error.code}
    message = translate(chosen, language, **values)
    return f"{error.where}: {message}" if error.where else message


def locale_tables() -> dict[str, dict[str, str]]:
    """Return the translation tables by locale, Chinese under every key that selects it."""
    english = {key: entry[ENGLISH] for key, entry in STRINGS.items()}
    chinese = {key: entry.get(CHINESE, entry[ENGLISH]) for key, entry in STRINGS.items()}
    tables: dict[str, dict[str, str]] = {ENGLISH: english}
    for locale in CHINESE_LOCALES:
        tables[locale] = chinese
    return tables


def build_i18n(extra: Mapping[str, Mapping[str, str]] | None = None) -> gr.I18n:
    """Build the `gr.I18n` passed to mount_gradio_app, with optional extra tables merged in."""
    tables = locale_tables()
    for locale, entries in (extra or {}).items():
        tables.setdefault(locale, {}).update(entries)
    return gr.I18n(**tables)


# Built once: components call `I18N("key")` for their labels.
I18N = build_i18n()


def label(key: str) -> Any:
    """Return the lazy translation of `key` for a component label; raises KeyError for an unknown key."""
    if key not in STRINGS:
        raise KeyError(f"unknown UI string {key!r}; add it to ui.i18n.STRINGS")
    return I18N(key)

"""UI strings of the Scenarios, Compare and Batch tabs and of the workbench errors, in English and Chinese.

`ui.i18n` merges this table into its `STRINGS`; keys follow the same rules
(error messages are keyed "error.<code>", variants "error.<code>+<param>").
"""

from __future__ import annotations

WORKBENCH_STRINGS: dict[str, dict[str, str]] = {
    # Preset picker (chat tab and others).
    "preset.label": {"en": "Scenario preset", "zh-CN": "场景预设"},
    "preset.info": {
        "en": "Sets the sampling sliders and system prompt; moving a slider switches to custom.",
        "zh-CN": "设置采样滑块和系统提示词；手动调整滑块后变为“自定义”。",
    },
    "preset.custom": {"en": "Custom", "zh-CN": "自定义"},
    "preset.custom_description": {
        "en": "Custom settings: the values were changed by hand.",
        "zh-CN": "自定义设置：参数已被手动修改。",
    },
    "preset.ignored": {
        "en": "{model} ignores {params}: these settings are not sent to it.",
        "zh-CN": "{model} 会忽略 {params}：这些设置不会发送给它。",
    },
    "preset.saved_by_user": {"en": "Saved by you.", "zh-CN": "你保存的预设。"},
    # Scenarios tab.
    "scn.intro": {
        "en": "Pick a scenario to see its settings, adjust them, and save your own preset. Presets appear in the Chat, Compare and Batch tabs.",
        "zh-CN": "选择一个场景查看其参数，按需调整，并保存为自己的预设。预设可在“对话”“对比”“批量”标签页中使用。",
    },
    "scn.model": {"en": "Check against model", "zh-CN": "检查适用模型"},
    "scn.model_info": {
        "en": "Settings this model ignores are marked below.",
        "zh-CN": "下方会标出该模型会忽略的设置。",
    },
    "scn.presence_penalty": {"en": "Presence penalty", "zh-CN": "存在惩罚（presence penalty）"},
    "scn.presence_penalty_info": {
        "en": "Above 0 pushes the model towards new topics; below 0 lets it stay on topic.",
        "zh-CN": "大于 0 鼓励模型谈论新话题；小于 0 让它更集中在已有话题上。",
    },
    "scn.frequency_penalty": {"en": "Frequency penalty", "zh-CN": "频率惩罚（frequency penalty）"},
    "scn.frequency_penalty_info": {
        "en": "Above 0 makes repeating the same words less likely.",
        "zh-CN": "大于 0 会降低重复相同词语的可能性。",
    },
    "scn.seed": {"en": "Seed", "zh-CN": "随机种子（seed）"},
    "scn.seed_info": {
        "en": "The same seed and settings give the same reply on models that support it; leave empty for a random one.",
        "zh-CN": "在支持的模型上，相同的种子和设置会得到相同的回复；留空则每次随机。",
    },
    "scn.explain": {
        "en": (
            "**Temperature**: how adventurous the wording is; low for facts and code, high for ideas.  \n"
            "**Top-p**: only the most likely words whose chances add up to this share are considered; lower is safer.  \n"
            "**Max tokens**: the longest reply allowed; a token is about ¾ of an English word or one Chinese character.  \n"
            "**Presence penalty**: encourages new topics.  \n"
            "**Frequency penalty**: discourages repeating words.  \n"
            "**Seed**: makes runs repeatable where the model supports it."
        ),
        "zh-CN": (
            "**温度**：措辞有多大胆；事实和代码用低值，创意用高值。  \n"
            "**Top-p**：只在累计概率达到该比例的最可能词语中选择；越低越保守。  \n"
            "**最大生成词元数**：回复的最大长度；一个词元约等于一个汉字或 ¾ 个英文单词。  \n"
            "**存在惩罚**：鼓励谈论新话题。  \n"
            "**频率惩罚**：减少重复用词。  \n"
            "**随机种子**：在支持的模型上让结果可复现。"
        ),
    },
    "scn.name": {"en": "Preset name", "zh-CN": "预设名称"},
    "scn.name_placeholder": {"en": "For example: support replies, short", "zh-CN": "例如：简短客服回复"},
    "scn.save": {"en": "Save as preset", "zh-CN": "保存为预设"},
    "scn.delete": {"en": "Delete this preset", "zh-CN": "删除此预设"},
    "scn.saved": {"en": "Saved preset “{name}”.", "zh-CN": "已保存预设“{name}”。"},
    "scn.deleted": {"en": "Deleted preset “{name}”.", "zh-CN": "已删除预设“{name}”。"},
    "scn.delete_shipped": {
        "en": "Shipped presets cannot be deleted; pick a preset you saved.",
        "zh-CN": "内置预设不能删除；请选择你自己保存的预设。",
    },
    # Compare tab.
    "cmp.prompt": {"en": "Prompt", "zh-CN": "提示词"},
    "cmp.text_only": {
        "en": "Image or voice input needs the image pipeline and the speech model, which this server has not set up; use text prompts here.",
        "zh-CN": "图片或语音输入需要图片处理和语音模型，本服务器尚未配置；此处请使用文本提示词。",
    },
    "cmp.image": {"en": "Image (optional, sent to every pane)", "zh-CN": "图片（可选，发送给每一栏）"},
    "cmp.voice": {"en": "Speak the prompt", "zh-CN": "语音输入提示词"},
    "cmp.panes": {"en": "Panes", "zh-CN": "对比栏数"},
    "cmp.repeats": {"en": "Runs per pane", "zh-CN": "每栏运行次数"},
    "cmp.repeats_info": {
        "en": "Repeat each run to see the spread (min / median / max).",
        "zh-CN": "重复运行以查看波动（最小 / 中位数 / 最大）。",
    },
    "cmp.seed": {"en": "Fixed seed for all panes", "zh-CN": "所有栏使用的固定种子"},
    "cmp.seed_info": {
        "en": "Makes runs reproducible on models that support a seed; leave empty for none.",
        "zh-CN": "在支持种子的模型上使结果可复现；留空则不设置。",
    },
    "cmp.use_cache": {"en": "Allow cached replies", "zh-CN": "允许使用缓存的回复"},
    "cmp.use_cache_info": {
        "en": "Off measures the model itself; on may answer from the cache.",
        "zh-CN": "关闭时测量模型本身；开启时可能直接返回缓存。",
    },
    "cmp.run": {"en": "Run", "zh-CN": "运行"},
    "cmp.stop": {"en": "Stop", "zh-CN": "停止"},
    "cmp.pane": {"en": "Pane {number}", "zh-CN": "第 {number} 栏"},
    "cmp.output": {"en": "Reply", "zh-CN": "回复"},
    "cmp.exports": {"en": "Export (Markdown, JSON, CSV)", "zh-CN": "导出（Markdown、JSON、CSV）"},
    "cmp.waiting": {"en": "waiting for the first token…", "zh-CN": "正在等待首个词元…"},
    "cmp.run_of": {"en": "run {done} of {total}", "zh-CN": "第 {done}/{total} 次"},
    "cmp.ttft": {"en": "first token {value} s", "zh-CN": "首字 {value} 秒"},
    "cmp.speed": {"en": "{value} tokens/s", "zh-CN": "{value} 词元/秒"},
    "cmp.tokens": {"en": "{value} tokens", "zh-CN": "{value} 词元"},
    "cmp.tokens_estimated": {"en": "about {value} tokens", "zh-CN": "约 {value} 词元"},
    "cmp.chars": {"en": "{value} chars", "zh-CN": "{value} 字符"},
    "cmp.spread": {
        "en": "min / median / max over {runs} runs: first token {ttft} s · {speed} tokens/s · {tokens} tokens",
        "zh-CN": "{runs} 次运行的最小 / 中位数 / 最大：首字 {ttft} 秒 · {speed} 词元/秒 · {tokens} 词元",
    },
    "cmp.errors": {"en": "{count} of {runs} runs failed", "zh-CN": "{runs} 次运行中有 {count} 次失败"},
    # Batch tab.
    "batch.intro": {
        "en": "Upload a CSV (with a prompt column, optionally expected) or a JSONL file, pick models and a parameter grid, and start. The job runs on the server: you can close the tab and come back with its id.",
        "zh-CN": "上传 CSV（含 prompt 列，可选 expected 列）或 JSONL 文件，选择模型和参数网格后开始。任务在服务器上运行：可以关闭页面，之后凭任务编号回来查看。",
    },
    "batch.file": {"en": "Prompts file (CSV or JSONL)", "zh-CN": "提示词文件（CSV 或 JSONL）"},
    "batch.parsed": {
        "en": "{rows} prompts read ({format}, {encoding}).",
        "zh-CN": "已读取 {rows} 条提示词（{format}，{encoding}）。",
    },
    "batch.parsed_one": {
        "en": "1 prompt read ({format}, {encoding}).",
        "zh-CN": "已读取 1 条提示词（{format}，{encoding}）。",
    },
    "batch.skipped": {
        "en": "{count} rows with an empty prompt were skipped.",
        "zh-CN": "有 {count} 行的提示词为空，已跳过。",
    },
    "batch.skipped_one": {"en": "1 row with an empty prompt was skipped.", "zh-CN": "有 1 行的提示词为空，已跳过。"},
    "batch.models": {"en": "Models", "zh-CN": "模型"},
    "batch.preset": {"en": "Base settings (preset)", "zh-CN": "基础设置（预设）"},
    "batch.preset_info": {
        "en": "System prompt, max tokens, penalties and seed for every run; the grid below sets temperature and top-p.",
        "zh-CN": "每次运行使用的系统提示词、最大词元数、惩罚和种子；温度和 top-p 由下面的网格设置。",
    },
    "batch.temperatures": {"en": "Temperature values", "zh-CN": "温度取值"},
    "batch.top_ps": {"en": "Top-p values", "zh-CN": "Top-p 取值"},
    "batch.grid_info": {
        "en": "Comma-separated, such as 0.2, 0.7; empty uses the preset's value.",
        "zh-CN": "用逗号分隔，例如 0.2, 0.7；留空则使用预设中的值。",
    },
    "batch.start": {"en": "Start batch", "zh-CN": "开始批量运行"},
    "batch.job_id": {"en": "Job id", "zh-CN": "任务编号"},
    "batch.job_id_info": {
        "en": "Keep it to come back to the job later.",
        "zh-CN": "请记下编号，以便稍后回来查看。",
    },
    "batch.jobs": {"en": "Your jobs", "zh-CN": "你的任务"},
    "batch.open": {"en": "Open", "zh-CN": "打开"},
    "batch.cancel": {"en": "Cancel job", "zh-CN": "取消任务"},
    "batch.download": {"en": "Download results (CSV, JSONL)", "zh-CN": "下载结果（CSV、JSONL）"},
    "batch.results": {"en": "Results", "zh-CN": "结果"},
    "batch.started": {
        "en": "Job {job_id} started: {runs} runs.",
        "zh-CN": "任务 {job_id} 已开始：共 {runs} 次运行。",
    },
    "batch.state.running": {"en": "running", "zh-CN": "运行中"},
    "batch.state.done": {"en": "finished", "zh-CN": "已完成"},
    "batch.state.cancelled": {"en": "cancelled", "zh-CN": "已取消"},
    "batch.state.failed": {"en": "stopped by an internal error", "zh-CN": "因内部错误而停止"},
    "batch.progress": {
        "en": "Job {job_id} {state}: {done} of {total} runs, {failed} failed, {elapsed} elapsed.",
        "zh-CN": "任务 {job_id} {state}：已完成 {done}/{total} 次运行，失败 {failed} 次，用时 {elapsed}。",
    },
    "batch.job_choice": {"en": "{job_id} · {source} · {state}", "zh-CN": "{job_id} · {source} · {state}"},
    "batch.download_partial": {
        "en": "The download has the {done} of {total} runs finished so far; the files are refreshed when the job ends.",
        "zh-CN": "下载文件包含目前已完成的 {done}/{total} 次运行；任务结束后文件会自动更新。",
    },
    # Results table headers; the CSV and JSONL downloads keep the field names.
    "batch.col.number": {"en": "#", "zh-CN": "#"},
    "batch.col.row_id": {"en": "Row id", "zh-CN": "行编号"},
    "batch.col.model": {"en": "Model", "zh-CN": "模型"},
    "batch.col.temperature": {"en": "Temperature", "zh-CN": "温度"},
    "batch.col.top_p": {"en": "Top-p", "zh-CN": "Top-p"},
    "batch.col.status": {"en": "Status", "zh-CN": "状态"},
    "batch.col.latency_s": {"en": "Latency (s)", "zh-CN": "耗时（秒）"},
    "batch.col.tokens": {"en": "Tokens", "zh-CN": "词元数"},
    "batch.col.served_by": {"en": "Served by", "zh-CN": "实际模型"},
    "batch.col.matches_expected": {"en": "Matches expected", "zh-CN": "符合预期"},
    "batch.col.output": {"en": "Reply", "zh-CN": "回复"},
    "batch.col.error": {"en": "Error", "zh-CN": "错误"},
    "batch.row.ok": {"en": "ok", "zh-CN": "成功"},
    "batch.row.error": {"en": "failed", "zh-CN": "失败"},
    "batch.row.cancelled": {"en": "cancelled", "zh-CN": "已取消"},
    "batch.matches.yes": {"en": "yes", "zh-CN": "是"},
    "batch.matches.no": {"en": "no", "zh-CN": "否"},
    "batch.eta": {"en": "About {eta} left.", "zh-CN": "预计还需 {eta}。"},
    "batch.no_file": {"en": "Upload a prompts file first.", "zh-CN": "请先上传提示词文件。"},
    "batch.shown_rows": {
        "en": "The table shows the first {shown} of {total} results; the downloads have all of them.",
        "zh-CN": "表格显示前 {shown} 条结果（共 {total} 条）；下载文件包含全部结果。",
    },
    # Workbench errors, by code. "error.<code>" uses no params, so an error with empty params still reads
    # in the user's language. The "+param" variants name the values when the error carries them.
    "error.preset_file_invalid": {
        "en": "A presets file is invalid. Fix the named key in the file, or delete the file to start from the shipped presets.",
        "zh-CN": "预设文件无效。请修正文件中指出的键，或删除该文件以使用内置预设。",
    },
    "error.preset_file_invalid+key_path+file": {
        "en": "The presets file {file} is invalid at {key_path}. Fix that key, or delete the file to start from the shipped presets.",
        "zh-CN": "预设文件 {file} 中的 {key_path} 无效。请修正该项，或删除该文件以使用内置预设。",
    },
    "error.preset_file_invalid+file": {
        "en": "The presets file {file} cannot be read. Fix the file, or delete it to start from the shipped presets.",
        "zh-CN": "无法读取预设文件 {file}。请修正该文件，或删除它以使用内置预设。",
    },
    "error.preset_save_failed": {
        "en": "The preset could not be saved. Check that presets.data_dir in the config points to a directory Parley can write to.",
        "zh-CN": "无法保存预设。请检查配置中的 presets.data_dir 是否指向 Parley 可写入的目录。",
    },
    "error.preset_save_failed+file": {
        "en": "The preset could not be saved to {file}. Check that presets.data_dir in the config points to a directory Parley can write to.",
        "zh-CN": "无法把预设保存到 {file}。请检查配置中的 presets.data_dir 是否指向 Parley 可写入的目录。",
    },
    "error.preset_name_invalid": {
        "en": "The preset name is empty or invalid. Enter a name of 1 to 64 printable characters.",
        "zh-CN": "预设名称为空或无效。请输入 1 到 64 个可打印字符作为名称。",
    },
    "error.preset_name_invalid+shipped_name": {
        "en": "The name “{shipped_name}” is already used by a shipped preset. Choose another name.",
        "zh-CN": "名称“{shipped_name}”已被内置预设使用。请换一个名称。",
    },
    "error.preset_name_invalid+name": {
        "en": "The preset name “{name}” cannot be used. Enter a name of 1 to 64 printable characters.",
        "zh-CN": "不能使用预设名称“{name}”。请输入 1 到 64 个可打印字符作为名称。",
    },
    "error.preset_value_invalid": {
        "en": "A setting of the preset is out of range. Move it back into its range and save again.",
        "zh-CN": "预设中有设置超出范围。请调回允许的范围后再保存。",
    },
    "error.preset_value_invalid+name": {
        "en": "A setting of the preset “{name}” is out of range. Move it back into its range and save again.",
        "zh-CN": "预设“{name}”中有设置超出范围。请调回允许的范围后再保存。",
    },
    "error.preset_not_found": {
        "en": "The preset does not exist. Pick one of the presets in the list.",
        "zh-CN": "该预设不存在。请从列表中选择。",
    },
    "error.preset_not_found+name": {
        "en": "The preset “{name}” does not exist. Pick one of the presets in the list.",
        "zh-CN": "预设“{name}”不存在。请从列表中选择。",
    },
    "error.batch_file_empty": {
        "en": "The file has no prompts. Upload a CSV with a prompt column and at least one row, or a JSONL file with one prompt per line.",
        "zh-CN": "文件中没有提示词。请上传含 prompt 列且至少有一行数据的 CSV，或每行一条提示词的 JSONL 文件。",
    },
    "error.batch_file_empty+filename": {
        "en": "{filename} has no prompts. Upload a CSV with a prompt column and at least one row, or a JSONL file with one prompt per line.",
        "zh-CN": "{filename} 中没有提示词。请上传含 prompt 列且至少有一行数据的 CSV，或每行一条提示词的 JSONL 文件。",
    },
    "error.batch_file_too_large": {
        "en": "The file is over the upload size limit. Split it into smaller files, or raise batch.max_upload_mb in the config.",
        "zh-CN": "文件超过了上传大小上限。请拆分成更小的文件，或在配置中调大 batch.max_upload_mb。",
    },
    "error.batch_file_too_large+filename+size_mb+limit_mb": {
        "en": "{filename} is {size_mb} MB, over the {limit_mb} MB limit. Split it into smaller files, or raise batch.max_upload_mb in the config.",
        "zh-CN": "{filename} 大小为 {size_mb} MB，超过了 {limit_mb} MB 的上限。请拆分成更小的文件，或在配置中调大 batch.max_upload_mb。",
    },
    "error.batch_file_encoding": {
        "en": "The file is not UTF-8 and its encoding could not be detected. Save it as UTF-8 (in Excel: Save As, CSV UTF-8) and upload it again.",
        "zh-CN": "文件不是 UTF-8 编码，且无法识别其编码。请另存为 UTF-8（Excel 中：另存为“CSV UTF-8”）后重新上传。",
    },
    "error.batch_file_encoding+filename": {
        "en": "{filename} is not UTF-8 and its encoding could not be detected. Save it as UTF-8 (in Excel: Save As, CSV UTF-8) and upload it again.",
        "zh-CN": "{filename} 不是 UTF-8 编码，且无法识别其编码。请另存为 UTF-8（Excel 中：另存为“CSV UTF-8”）后重新上传。",
    },
    "error.batch_no_prompt_column+line+filename+columns": {
        "en": "{filename} line {line} has no prompt key (its keys: {columns}). Give every line a “prompt” key.",
        "zh-CN": "{filename} 第 {line} 行没有 prompt 键（现有键：{columns}）。请为每一行加上“prompt”键。",
    },
    "error.batch_no_prompt_column+filename+columns": {
        "en": "{filename} has no prompt column (its columns: {columns}). Name the column with the prompts “prompt” (or input, question, 提示词, 问题).",
        "zh-CN": "{filename} 中没有提示词列（现有列：{columns}）。请把提示词所在列命名为“prompt”（或 input、question、提示词、问题）。",
    },
    "error.batch_no_prompt_column": {
        "en": "The file has no prompt column. Name the column with the prompts “prompt” (or input, question, 提示词, 问题).",
        "zh-CN": "文件中没有提示词列。请把提示词所在列命名为“prompt”（或 input、question、提示词、问题）。",
    },
    "error.batch_file_format": {
        "en": "The file cannot be read. Fix it, or save it again as CSV or JSONL.",
        "zh-CN": "无法读取该文件。请修正文件，或重新保存为 CSV 或 JSONL 文件。",
    },
    "error.batch_file_format+filename+line": {
        "en": "{filename} line {line} cannot be read. Fix that line, or save the file again as CSV or JSONL.",
        "zh-CN": "{filename} 第 {line} 行无法读取。请修正该行，或重新保存为 CSV 或 JSONL 文件。",
    },
    "error.batch_csv_unclosed_quote": {
        "en": "A quoted field in the file is not closed, so the rows after it would be read as one prompt. Close the quote, or write a quote that is part of the text as two quotes (\"\").",
        "zh-CN": "文件中有一个带引号的字段没有闭合，其后的各行会被读成同一条提示词。请补上闭合的引号，或把正文中的引号写成两个引号（\"\"）。",
    },
    "error.batch_csv_unclosed_quote+filename+line+end_line": {
        "en": "{filename}: the quote that opens on line {line} is not closed where its field ends, so lines {line} to {end_line} would be read as one prompt. Close the quote on line {line}, or write a quote that is part of the text as two quotes (\"\").",
        "zh-CN": "{filename}：第 {line} 行开始的引号没有在字段结尾处闭合，第 {line} 至 {end_line} 行会被读成同一条提示词。请在第 {line} 行补上闭合的引号，或把正文中的引号写成两个引号（\"\"）。",
    },
    "error.batch_grid_invalid": {
        "en": "A grid value is invalid. Enter numbers in the allowed range, separated by commas, such as 0.2, 0.7.",
        "zh-CN": "网格取值无效。请输入允许范围内的数字，用逗号分隔，例如 0.2, 0.7。",
    },
    "error.batch_grid_invalid+name+count+max_values": {
        "en": "{name} has {count} values, more than the {max_values} allowed. Remove some values.",
        "zh-CN": "{name} 有 {count} 个取值，超过了允许的 {max_values} 个。请删掉一些取值。",
    },
    "error.batch_grid_invalid+name+value+low+high": {
        "en": "The {name} value “{value}” is invalid. Enter numbers from {low} to {high}, separated by commas, such as 0.2, 0.7.",
        "zh-CN": "{name} 的取值“{value}”无效。请输入 {low} 到 {high} 之间的数字，用逗号分隔，例如 0.2, 0.7。",
    },
    "error.batch_no_model": {"en": "No model is selected. Select at least one model.", "zh-CN": "未选择模型。请至少选择一个模型。"},
    "error.batch_grid_too_large": {
        "en": "The job has more runs than the limit allows. Use fewer prompts, models or values, or raise batch.max_runs in the config.",
        "zh-CN": "该任务的运行次数超过上限。请减少提示词、模型或取值，或在配置中调大 batch.max_runs。",
    },
    "error.batch_grid_too_large+prompts+settings+runs+limit": {
        "en": "The job would make {prompts} prompts × {settings} settings = {runs} runs, over the limit of {limit}. Use fewer prompts, models or values, or raise batch.max_runs in the config.",
        "zh-CN": "该任务将产生 {prompts} 条提示词 × {settings} 组设置 = {runs} 次运行，超过了 {limit} 次的上限。请减少提示词、模型或取值，或在配置中调大 batch.max_runs。",
    },
    "error.batch_job_not_found": {
        "en": "No job id was entered. Enter the id shown when the job started, or pick a job from “Your jobs”.",
        "zh-CN": "未填写任务编号。请输入任务开始时显示的编号，或从“你的任务”中选择。",
    },
    "error.batch_job_not_found+job_id": {
        "en": "There is no job {job_id}. Check the id; finished jobs are kept until the server restarts or newer jobs replace them.",
        "zh-CN": "找不到任务 {job_id}。请检查编号；已结束的任务会保留到服务器重启或被更新的任务替换为止。",
    },
    "error.canned_reply": {
        "en": "No model answered: the fallback chain ended in the canned reply, which is not counted as an answer. Retry later or pick another model.",
        "zh-CN": "没有模型给出回答：回退链最终返回了预设的致歉回复，不计为模型的回答。请稍后重试，或换一个模型。",
    },
    "error.canned_reply+failures": {
        "en": "No model answered ({failures}): the fallback chain ended in the canned reply, which is not counted as an answer. Retry later or pick another model.",
        "zh-CN": "没有模型给出回答（{failures}）：回退链最终返回了预设的致歉回复，不计为模型的回答。请稍后重试，或换一个模型。",
    },
    "error.compare_invalid": {
        "en": "The compare run cannot start. Use 2 to 4 panes with a model each, 1 to 20 runs per pane and a non-empty prompt.",
        "zh-CN": "无法开始对比。请使用 2 到 4 栏并为每栏选择模型，每栏运行 1 到 20 次，并填写提示词。",
    },
}

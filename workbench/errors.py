"""Errors the workbench raises for input a user can correct, and for a run no model answered.

Each class has its own `code`, so the UI can show a translated message
built from `params`; the English text is for logs.
"""

from __future__ import annotations

from backends.errors import ConfigError, InputTooLargeError, InvalidInputError, NotFoundError, RetryableError


class PresetFileError(ConfigError):
    """A presets file (shipped, configured or saved by users) that does not validate."""

    code = "preset_file_invalid"
    fix = "Fix the named key in the presets file, or delete the file to start from the shipped presets."


class PresetSaveError(PresetFileError):
    code = "preset_save_failed"
    fix = "Check that presets.data_dir in the config points to a directory Parley can write to."


class PresetNameError(InvalidInputError):
    code = "preset_name_invalid"
    fix = "Use a name of 1 to 64 characters that no shipped preset uses."


class PresetValueError(InvalidInputError):
    code = "preset_value_invalid"
    fix = "Move the named setting back into its range and save again."


class PresetNotFoundError(NotFoundError):
    code = "preset_not_found"
    fix = "Pick one of the presets in the list."


class InputFileEmptyError(InvalidInputError):
    code = "batch_file_empty"
    fix = "Upload a CSV with a prompt column and at least one row, or a JSONL file with one prompt per line."


class InputFileTooLargeError(InputTooLargeError):
    code = "batch_file_too_large"
    fix = "Split the file into smaller files, or raise batch.max_upload_mb in the config."


class InputEncodingError(InvalidInputError):
    code = "batch_file_encoding"
    fix = "Save the file as UTF-8 (in Excel: Save As, CSV UTF-8) and upload it again."


class NoPromptColumnError(InvalidInputError):
    code = "batch_no_prompt_column"
    fix = "Name the column that holds the prompts 'prompt' (or 'input', 'question', '提示词', '问题')."


class InputFormatError(InvalidInputError):
    code = "batch_file_format"
    fix = "Fix the named line, or save the file again as CSV or JSONL."


class UnclosedQuoteError(InputFormatError):
    """A quoted CSV field that runs over line breaks into what looks like further rows.

    `params["line"]` is the line where the quote opens and `params["end_line"]` the last line it takes in.
    """

    code = "batch_csv_unclosed_quote"
    fix = 'Close the quote, or write a quote that is part of the text as two quotes ("").'


class GridError(InvalidInputError):
    code = "batch_grid_invalid"
    fix = "Enter values separated by commas, such as 0.2, 0.7, 1.0, within the range shown."


class NoModelError(InvalidInputError):
    code = "batch_no_model"
    fix = "Select at least one model."


class GridTooLargeError(InvalidInputError):
    code = "batch_grid_too_large"
    fix = "Use fewer prompts, models or parameter values, or raise batch.max_runs in the config."


class JobNotFoundError(NotFoundError):
    code = "batch_job_not_found"
    fix = "Check the job id; finished jobs are kept until the server restarts or newer jobs replace them."


class CannedReplyError(RetryableError):
    """A run that the fallback chain answered with the canned reply, so no model answered it.

    `params["failures"]` lists what failed before, as the served-by line shows it.
    """

    code = "canned_reply"
    fix = "Retry later or pick another model; the canned reply is not the model's answer."

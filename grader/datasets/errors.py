"""The one error of the data builders: input they cannot use, with the file or folder named."""

from __future__ import annotations

from grader.errors import SpecError


class DataBuildError(SpecError):
    """A missing folder, a bad IDX file, an unreadable image, or an output it must not replace."""

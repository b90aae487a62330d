"""SAM templates (`Transform: AWS::Serverless-2016-10-31`) run as hub configurations.

`is_template` tells a SAM template from a hub configuration; `translate` turns one into the hub configuration it
stands for (a `Located` document whose marks point into the template), which then goes through the hub's own
validation. The template is read with cfn-lint's CloudFormation YAML/JSON loader (short-form tags, line marks)
and `Globals` are merged by aws-sam-translator, the SAM specification's own implementation; both come with the
`sam` extra. `hub run` creates the template's missing queues, streams and tables on the AWS API emulator
(resources.py plans them from the template, emulator.py makes them exist).
"""

from __future__ import annotations

import re
from pathlib import Path

TRANSFORM = "AWS::Serverless-2016-10-31"
_TRANSFORM = re.compile(r"""(?:^|[{,])\s*["']?Transform["']?\s*:|^\s*-\s*["']?AWS::Serverless-2016-10-31""", re.M)
"""A `Transform` key at the start of a line, or after `{` or `,` (a JSON template on one line, as tools write
them), or the transform as an item of a YAML list."""


def is_template(path: str | Path) -> bool:
    """Whether `path` is a SAM template: its text declares the SAM transform. False for anything unreadable (the
    hub's own loader then says what is wrong with it)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return TRANSFORM in text and _TRANSFORM.search(text) is not None

"""The longest duration a pipeline spec may write: a year and a day (retry delays, timeouts,
intervals, SLAs, ...). Longer waits are a calendar's job, not a retry's. Here, below the
timing layer, because the model itself caps with it (an exponential backoff never waits
longer); ``timing.durations`` holds the other bounds and parses against this one."""
from __future__ import annotations

DAY = 86400
MAX_SPEC_SECONDS = 366 * DAY

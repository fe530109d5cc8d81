"""Where the project's shipped ``configs/`` and ``data/`` live: the checkout (editable install),
or ``$TIDEMILL_PROJECT_DIR`` where an image copies them (the Airflow image: ``/opt/tidemill``)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(os.environ.get("TIDEMILL_PROJECT_DIR")
                   or Path(__file__).resolve().parent.parent)

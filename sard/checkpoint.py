"""python -m sard.checkpoint RUN_DIR DEST [--fp32]: ship a training run as a model folder
(config.json + the EMA generator in fp16, and the run's mask bank)."""
from __future__ import annotations

import sys

from sard.io import SardInputError
from sard.validate import write_error
from sard.store.model_folder import ship


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) < 2:
        print("usage: python -m sard.checkpoint RUN_DIR DEST [--fp32]", file=sys.stderr)
        return 2
    extra = [x for x in argv[2:] if x != "--fp32"]
    if extra:
        print(f"sard.checkpoint: error: {extra[0]}: unexpected; usage: python -m sard.checkpoint RUN_DIR DEST "
              f"[--fp32]", file=sys.stderr)
        return 2
    try:
        print(ship(argv[0], argv[1], fp16="--fp32" not in argv[2:]))
    except SardInputError as e:
        print(f"sard.checkpoint: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:     # a read-only or full disk: what was there stays (every write is atomic)
        print(f"sard.checkpoint: failed: {write_error(e, e.filename or argv[1])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

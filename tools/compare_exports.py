"""python -m tools.compare_exports A B: two export trees (tools/export_identity.sh) compared: every
pair's files byte-identical, manifests equal but for 'seconds' (the timing); exit 1 if any differ."""
import json
import sys
from pathlib import Path

a, b = Path(sys.argv[1]), Path(sys.argv[2])
fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
assert fa == fb, (set(fa) ^ set(fb))
n = bad = 0
for r in fa:
    if r.name == "manifest.jsonl":
        la = [json.loads(l) for l in (a / r).read_text().splitlines()]
        lb = [json.loads(l) for l in (b / r).read_text().splitlines()]
        for x, y in zip(la, lb):
            x.pop("seconds", None)
            y.pop("seconds", None)
        if la != lb:
            bad += 1
            print("manifest differs", r)
    elif (a / r).read_bytes() != (b / r).read_bytes():
        bad += 1
        print("differs", r)
    n += 1
print(f"{n} files compared, {bad} differ")
sys.exit(1 if bad else 0)

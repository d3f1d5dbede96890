"""Read a GGUF file's tokenizer out into a folder ChatTokenizer loads: ``python -m ...tokenizer_export GGUF OUT``.

Run in a child process (base_model.tokenizer_dir) so the serving process never imports transformers, whose
GGUF tokenizer converter this needs: about 150 MB that would otherwise stay resident in every replica.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def export_tokenizer(gguf: Path, out_dir: Path) -> None:
    """Save ``gguf``'s tokenizer (tokenizer.json, tokenizer_config.json, chat template) into ``out_dir``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(out_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", type=Path, help="the GGUF file whose metadata holds the tokenizer")
    parser.add_argument("out", type=Path, help="an existing folder to save the tokenizer into")
    args = parser.parse_args(argv)
    try:
        export_tokenizer(args.gguf, args.out)
    except Exception as err:  # the parent shows this line; a traceback would bury it
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

import sys

from worker.cli import main

# Guarded: ``provisioner run --processes N`` starts its children with multiprocessing's
# spawn, which imports this module again under another name.
if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Cityscapes needs a (free) account at https://www.cityscapes-dataset.com and accepting its licence;
# nothing can fetch it anonymously. This uses the official downloader from cityscapesScripts
# (`pip install cityscapesscripts`), which asks for your login, and unpacks into the layout
# `--preset cityscapes` reads:
#   DEST/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png
#   DEST/gtFine/{train,val}/<city>/*_gtFine_{labelIds,instanceIds}.png
# Needs internet; not run by the tests (the build machine is offline).
# Usage: scripts/download_cityscapes.sh [DEST=datasets/cityscapes]
set -euo pipefail
DEST=${1:-datasets/cityscapes}
command -v csDownload >/dev/null || { echo "install the downloader: pip install cityscapesscripts" >&2; exit 2; }
mkdir -p "$DEST"
cd "$DEST"
csDownload gtFine_trainvaltest.zip leftImg8bit_trainvaltest.zip
unzip -q -n gtFine_trainvaltest.zip
unzip -q -n leftImg8bit_trainvaltest.zip
echo "Cityscapes ready: $DEST  (spade data validate --preset cityscapes --data $DEST)"

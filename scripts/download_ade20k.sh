#!/usr/bin/env bash
# Download ADE20K (SceneParsing / ADEChallengeData2016, ~920 MB) from MIT CSAIL, the source the
# official SPADE README links, and unpack it in the layout `--preset ade20k` reads:
#   DEST/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg
#   DEST/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png
# Needs internet (curl, unzip); not run by the tests (the build machine is offline).
# Usage: scripts/download_ade20k.sh [DEST=datasets]
#        spade data validate --preset ade20k --data DEST/ADEChallengeData2016
set -euo pipefail
DEST=${1:-datasets}
URL=http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip
mkdir -p "$DEST"
curl -L --fail -C - -o "$DEST/ADEChallengeData2016.zip" "$URL"
unzip -q -n "$DEST/ADEChallengeData2016.zip" -d "$DEST"
echo "ADE20K ready: $DEST/ADEChallengeData2016 (label ids are used as stored, 0 = other; see spade_tf/data/layouts.py)"

#!/bin/sh
# Exit 99 (skip: nothing to deploy) unless the candidate beats the deployed model.
new=$(cat "models/candidate_$1.txt")
old=$(cat models/deployed.txt 2>/dev/null || echo -1)
echo "candidate $new, deployed $old"
[ "$new" -gt "$old" ] || exit 99

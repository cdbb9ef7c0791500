#!/bin/sh
set -e
cp "models/candidate_$1.txt" models/deployed.txt
echo "$1" >> models/deployments.log

#!/usr/bin/env bash
# Installs the Debian packages the tests use, when missing, in one apt-get call:
#   dcmtk, dicom3tools  DICOM fixtures, reference decodes and the SEG validator (dciodvfy)
#   cmake, g++          CharLS, the JPEG-LS codec of dicom-pixeldata
#   chromium            the HTML report is opened and screenshotted headless (tests/report.rs)
#   orthanc             a real PACS peer for the DICOM node tests (tests/node.rs)
#   orthanc-dicomweb    Orthanc's DICOMweb plugin, the STOW-RS peer of tests/dicomweb.rs
#   prometheus          scrapes efen's /metrics in tests/http.rs
#   dcm2niix            a second reading of a 4D series' geometry (tests/series_road.rs)
set -euo pipefail

declare -A package_of=(
  [img2dcm]=dcmtk [storescu]=dcmtk [dciodvfy]=dicom3tools [cmake]=cmake [g++]=g++
  [chromium]=chromium [Orthanc]=orthanc [prometheus]=prometheus [dcm2niix]=dcm2niix
)
need=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null || need+=("${package_of[$tool]}")
done
# A plugin, not a command.
dpkg-query -W -f='${Status}' orthanc-dicomweb 2>/dev/null | grep -q 'install ok installed' || need+=(orthanc-dicomweb)
((${#need[@]})) || exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "system-packages: installing ${need[*]}"
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-dejavu-core >/dev/null
# Debian starts Orthanc and Prometheus as services on install; the tests start their own on free ports.
for service in orthanc prometheus; do
  if [[ " ${need[*]} " == *" $service "* ]] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done

#!/usr/bin/env bash
# Everything the tests need on a fresh Debian 12 machine (as root), installed or started only when absent:
# Orthanc, dcmtk, dicom3tools, GDCM tools, Redis, Chromium, a compiler for better-sqlite3, Mesa's software
# Vulkan from bookworm-backports (the WebGPU test) and PostgreSQL (database `test`, user postgres, password
# postgres on 127.0.0.1:5432 — what test/helpers/postgres.ts uses unless TEST_DATABASE_URL is set).
# Idempotent: on a machine that has it all it prints nothing and changes nothing. Used by .ci/run and the README.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v Orthanc >/dev/null 2>&1 || need+=(orthanc)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
command -v gdcmconv >/dev/null 2>&1 || need+=(libgdcm-tools)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)   # the browser tests (playwright-core drives /usr/bin/chromium)
# better-sqlite3 compiles its binary when no prebuilt one can be fetched (offline): node-gyp needs these.
{ command -v make && command -v g++ && command -v python3; } >/dev/null 2>&1 || need+=(build-essential python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian orthanc package may start a system instance on 8042/4242; the tests use their own ports.

# Software Vulkan for the WebGPU test (test/integration/webgpu.test.ts): Dawn refuses Debian 12's Mesa 22
# lavapipe; Mesa ≥ 25 from bookworm-backports works (adapter "llvmpipe").
if ! dpkg-query -W -f '${db:Status-Status} ${Version}' mesa-vulkan-drivers 2>/dev/null | grep -q '^installed .*~bpo12' ||
  ! dpkg-query -W -f '${db:Status-Status}' libvulkan1 2>/dev/null | grep -q '^installed'; then
  echo "setup: installing mesa-vulkan-drivers and libvulkan1 from bookworm-backports"
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf '%s\n' 'Types: deb' 'URIs: http://deb.debian.org/debian' 'Suites: bookworm-backports' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' >/etc/apt/sources.list.d/backports.sources
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup: starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# PostgreSQL for the database tests (db.test.ts, api.test.ts run on SQLite and PostgreSQL): TEST_DATABASE_URL
# when set, else the server on 127.0.0.1:5432 (database `test`, user postgres), started and set up when absent.
if [ -z "${TEST_DATABASE_URL:-}" ] && ! pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "setup: installing postgresql"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  fi
  pg_ctlcluster "$(ls /etc/postgresql | sort -n | tail -1)" main start || true
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
  su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
  su postgres -c "createdb test" 2>/dev/null || true
fi

#!/usr/bin/env bash
# Owns restoring a scripts/backup.sh dump into a database: checksum first, empty target unless told, pg_restore.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/restore.sh [options] DUMP [TARGET_DATABASE_URL] [-- pg_restore options]

Restores DUMP (a pg_dump custom-format archive from scripts/backup.sh) into the target
database: TARGET_DATABASE_URL, or else DATABASE_URL / DATABASE_URL_FILE (as the service
reads them). The database must exist (createdb it first). Steps: verify DUMP against
DUMP.sha256, check the archive reads, refuse a non-empty target, then pg_restore with
--no-owner --exit-on-error in one transaction (nothing is left half-restored), then ANALYZE.

options:
  --clean       drop the dump's objects in the target before recreating them
                (pg_restore --clean --if-exists); allows a non-empty target
  --force       restore into a non-empty target as it is (objects the dump creates must
                not exist there yet)
  --no-verify   skip the checksum (a dump without its .sha256 file)
  --jobs N      restore with N parallel jobs: faster on large dumps, but not in one
                transaction (a failure leaves the target partly restored)
  -h, --help    this text

Objects end up owned by the connecting user. Add pg_restore options after --, e.g.
-- --no-acl when the target cluster lacks the source's roles.
EOF
}

SCRIPT_NAME=restore
# shellcheck source=scripts/pg-url.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/pg-url.sh"

target_url() {
  local url
  if [[ -n ${1:-} ]]; then
    url=$1
  else
    url=$(database_url_from_env "no target: give TARGET_DATABASE_URL, or set DATABASE_URL or DATABASE_URL_FILE (see -h)") || exit 1
  fi
  split_database_url "$url"
}

verify_checksum() {
  local dump=$1 sum_file=$1.sha256 expected actual
  [[ -f $sum_file ]] || die "$sum_file not found: refusing an unverified dump (--no-verify to skip)"
  read -r expected _ <"$sum_file" || die "$sum_file is empty"
  [[ $expected =~ ^[0-9a-f]{64}$ ]] || die "$sum_file does not hold a sha256 checksum"
  actual=$(sha256sum <"$dump")
  actual=${actual%% *}
  [[ $actual == "$expected" ]] ||
    die "checksum mismatch: $dump is corrupt or not the file $sum_file describes (expected $expected, got $actual)"
  log "checksum ok ($actual)"
}

# Relations, routines, types and schemas outside the system catalogs: any of them means "in use".
readonly USER_OBJECTS_SQL="
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%')
     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
           AND t.typrelid = 0 AND t.typelem = 0)
     + (SELECT count(*) FROM pg_namespace
         WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%')"

main() {
  local clean=false force=false verify=true jobs='' positional=() extra=()
  while (($# > 0)); do
    case $1 in
      -h | --help)
        usage
        return 0
        ;;
      --clean) clean=true ;;
      --force) force=true ;;
      --no-verify) verify=false ;;
      --jobs)
        [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || die "--jobs needs a positive integer"
        jobs=$2
        shift
        ;;
      --)
        shift
        extra=("$@")
        break
        ;;
      -*)
        usage >&2
        return 2
        ;;
      *) positional+=("$1") ;;
    esac
    shift
  done
  if ((${#positional[@]} < 1 || ${#positional[@]} > 2)); then
    usage >&2
    return 2
  fi

  export LC_ALL=C
  for tool in pg_restore psql sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian/Ubuntu: apt-get install postgresql-client)"
  done
  local dump=${positional[0]}
  [[ -f $dump && -r $dump ]] || die "$dump: no such readable file"
  target_url "${positional[1]:-}"
  export PGAPPNAME=${PGAPPNAME:-restore}

  if $verify; then verify_checksum "$dump"; else log "checksum skipped (--no-verify)"; fi
  pg_restore --list "$dump" >/dev/null || die "$dump is not a readable pg_dump custom-format archive"

  local objects
  objects=$(psql --no-psqlrc --no-password --quiet --tuples-only --no-align --set=ON_ERROR_STOP=1 \
    --dbname="$DB_URL" --command="$USER_OBJECTS_SQL") || die "cannot query the target $DB_LABEL"
  if ((objects > 0)); then
    if $clean; then
      log "the target $DB_LABEL holds $objects objects: --clean drops and recreates the dump's objects"
    elif $force; then
      log "the target $DB_LABEL holds $objects objects: restoring over them (--force)"
    else
      die "the target $DB_LABEL is not empty ($objects objects): restore into a new database, or pass --clean (drop and recreate the dump's objects) or --force"
    fi
  fi

  local args=(--dbname="$DB_URL" --no-password --no-owner --exit-on-error)
  if [[ -n $jobs ]]; then args+=(--jobs="$jobs"); else args+=(--single-transaction); fi
  if $clean; then args+=(--clean --if-exists); fi

  local started=$SECONDS
  log "restoring $(basename -- "$dump") into $DB_LABEL ($(pg_restore --version))"
  # ${extra[@]+...}: an empty array is "unbound" under set -u in bash before 4.4 (macOS).
  pg_restore "${args[@]}" ${extra[@]+"${extra[@]}"} "$dump" || die "pg_restore failed${jobs:+: the target may be partly restored}"
  # pg_restore carries no planner statistics: without them the first queries plan badly.
  psql --no-psqlrc --no-password --quiet --set=ON_ERROR_STOP=1 --dbname="$DB_URL" --command=ANALYZE ||
    die "restored, but ANALYZE failed: run it by hand"
  log "done in $((SECONDS - started))s"
}

main "$@"

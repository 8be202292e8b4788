#!/usr/bin/env bash
# Owns logical backups of the service's PostgreSQL database: pg_dump custom format, checksum, upload hook, retention.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/backup.sh [-h]

Dumps the database with pg_dump (custom format, -Fc) into BACKUP_DIR as
<BACKUP_PREFIX>_<UTC timestamp>.dump with a <name>.dump.sha256 next to it, runs the
optional upload hook, then deletes old dumps. Prints the dump's path on stdout; logs on
stderr. Exits non-zero on any failure, leaving no partial dump behind.

environment:
  DATABASE_URL            postgres://user:pass@host:5432/db (or DATABASE_URL_FILE, not both)
  DATABASE_URL_FILE       file holding the URL (docker and Kubernetes secrets)
  BACKUP_DIR              where dumps go (default: ./backups)
  BACKUP_PREFIX           file name prefix (default: api)
  BACKUP_KEEP             keep the newest N dumps; 0 = no count limit (default: 7)
  BACKUP_MAX_AGE_DAYS     also delete dumps older than D days; 0 = off (default: 0)
  BACKUP_LOCK_WAIT_TIMEOUT  give up when a table lock is not granted in time (default: 60s)
  BACKUP_UPLOAD_COMMAND   run with bash after the dump is complete, with $1 = dump path and
                          $2 = checksum path; a failure fails the backup and skips retention.
                          e.g. 'aws s3 cp "$1" s3://my-bucket/api/ && aws s3 cp "$2" s3://my-bucket/api/'

The password is passed to pg_dump through PGPASSWORD, never on a command line. Other libpq
variables (PGSSLMODE, PGSSLROOTCERT, PGCONNECT_TIMEOUT, ...) apply as usual.
EOF
}

SCRIPT_NAME=backup
# shellcheck source=scripts/pg-url.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/pg-url.sh"

# Sets DB_URL (password removed, exported as PGPASSWORD) and DB_LABEL (host/db, for logs).
load_database_url() {
  local url
  url=$(database_url_from_env "DATABASE_URL or DATABASE_URL_FILE is required (see -h)") || exit 1
  split_database_url "$url"
}

non_negative_int() {
  [[ $2 =~ ^[0-9]+$ ]] || die "$1 must be a non-negative integer, got '$2'"
}

delete_dump() {
  rm -f -- "$1" "$1.sha256"
  log "deleted $(basename -- "$1") ($2)"
}

# Names embed a sortable UTC timestamp, so lexical order is age order; the age rule reads mtimes.
apply_retention() {
  local newest=$1 dumps=() i cutoff_minutes old
  shopt -s nullglob
  dumps=("$BACKUP_DIR/$BACKUP_PREFIX"_????????T??????Z.dump)
  shopt -u nullglob
  if ((BACKUP_KEEP > 0 && ${#dumps[@]} > BACKUP_KEEP)); then
    for ((i = 0; i < ${#dumps[@]} - BACKUP_KEEP; i++)); do
      [[ ${dumps[i]} == "$newest" ]] || delete_dump "${dumps[i]}" "beyond the newest $BACKUP_KEEP"
    done
  fi
  if ((BACKUP_MAX_AGE_DAYS > 0)); then
    cutoff_minutes=$((BACKUP_MAX_AGE_DAYS * 1440))
    while IFS= read -r -d '' old; do
      [[ $old == "$newest" ]] || delete_dump "$old" "older than $BACKUP_MAX_AGE_DAYS days"
    done < <(find "$BACKUP_DIR" -maxdepth 1 -type f -name "${BACKUP_PREFIX}_????????T??????Z.dump" \
      -mmin "+$cutoff_minutes" -print0)
  fi
}

main() {
  case ${1:-} in
    -h | --help)
      usage
      return 0
      ;;
    '') ;;
    *)
      usage >&2
      return 2
      ;;
  esac

  export LC_ALL=C
  BACKUP_DIR=${BACKUP_DIR:-./backups}
  BACKUP_PREFIX=${BACKUP_PREFIX:-api}
  BACKUP_KEEP=${BACKUP_KEEP:-7}
  BACKUP_MAX_AGE_DAYS=${BACKUP_MAX_AGE_DAYS:-0}
  BACKUP_LOCK_WAIT_TIMEOUT=${BACKUP_LOCK_WAIT_TIMEOUT:-60s}
  non_negative_int BACKUP_KEEP "$BACKUP_KEEP"
  non_negative_int BACKUP_MAX_AGE_DAYS "$BACKUP_MAX_AGE_DAYS"
  [[ $BACKUP_PREFIX =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "BACKUP_PREFIX may hold only letters, digits, '.', '_' and '-'"
  for tool in pg_dump pg_restore sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian/Ubuntu: apt-get install postgresql-client)"
  done
  load_database_url
  export PGAPPNAME=${PGAPPNAME:-backup}

  mkdir -p -- "$BACKUP_DIR"
  [[ -w $BACKUP_DIR ]] || die "BACKUP_DIR $BACKUP_DIR is not writable"

  local name dump checksum started size hash
  while
    name="${BACKUP_PREFIX}_$(date -u +%Y%m%dT%H%M%SZ).dump"
    dump="$BACKUP_DIR/$name"
    [[ -e $dump ]]
  do
    sleep 1 # names have one-second resolution: never overwrite a dump
  done
  checksum="$dump.sha256"
  # Hidden temporary names in the same directory: retention never sees them, and rename is atomic.
  tmp_dump="$BACKUP_DIR/.$name.tmp.$$"
  tmp_sum="$BACKUP_DIR/.$name.sha256.tmp.$$"
  trap 'rm -f -- "$tmp_dump" "$tmp_sum"' EXIT # globals: the trap runs after main returns

  started=$SECONDS
  log "dumping $DB_LABEL to $dump ($(pg_dump --version))"
  pg_dump --format=custom --no-password --lock-wait-timeout="$BACKUP_LOCK_WAIT_TIMEOUT" \
    --dbname="$DB_URL" --file="$tmp_dump" || die "pg_dump failed: no dump written"
  # A truncated or unreadable archive fails here, not on the day it is needed.
  pg_restore --list "$tmp_dump" >/dev/null || die "the dump does not read back: discarded"
  hash=$(sha256sum <"$tmp_dump")
  printf '%s  %s\n' "${hash%% *}" "$name" >"$tmp_sum"
  sync -- "$tmp_dump" "$tmp_sum" 2>/dev/null || sync
  mv -- "$tmp_dump" "$dump"
  mv -- "$tmp_sum" "$checksum"
  size=$(wc -c <"$dump")
  log "wrote $name ($((size)) bytes, sha256 ${hash%% *}) in $((SECONDS - started))s"

  if [[ -n ${BACKUP_UPLOAD_COMMAND:-} ]]; then
    log "running BACKUP_UPLOAD_COMMAND"
    BACKUP_FILE=$dump BACKUP_CHECKSUM_FILE=$checksum bash -c "$BACKUP_UPLOAD_COMMAND" backup-upload \
      "$dump" "$checksum" || die "BACKUP_UPLOAD_COMMAND failed: $name kept locally, retention skipped"
    log "upload done"
  fi

  apply_retention "$dump"
  printf '%s\n' "$dump"
  log "done in $((SECONDS - started))s"
}

main "$@"

# Shared by backup.sh and restore.sh (sourced, not run): logging and the database URL, read the way
# the service reads it (DATABASE_URL or DATABASE_URL_FILE) with the password kept off command lines.
# The sourcing script sets SCRIPT_NAME first.

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

percent_decode() {
  local s=$1 out='' byte
  while [[ $s =~ ^([^%]*)%([0-9A-Fa-f]{2})(.*)$ ]]; do
    printf -v byte '%b' "\\x${BASH_REMATCH[2]}"
    out+=${BASH_REMATCH[1]}$byte
    s=${BASH_REMATCH[3]}
  done
  printf '%s' "$out$s"
}

# The URL from DATABASE_URL or DATABASE_URL_FILE (both set is an error, as in the service); $1 names
# what is missing when neither is set.
database_url_from_env() {
  local url
  if [[ -n ${DATABASE_URL:-} && -n ${DATABASE_URL_FILE:-} ]]; then
    die "DATABASE_URL and DATABASE_URL_FILE are both set: use one"
  elif [[ -n ${DATABASE_URL_FILE:-} ]]; then
    [[ -r $DATABASE_URL_FILE ]] || die "DATABASE_URL_FILE: cannot read $DATABASE_URL_FILE"
    url=$(<"$DATABASE_URL_FILE")
    url=${url%$'\r'}
  elif [[ -n ${DATABASE_URL:-} ]]; then
    url=$DATABASE_URL
  else
    die "$1"
  fi
  printf '%s' "$url"
}

# Sets DB_URL (password removed, exported as PGPASSWORD) and DB_LABEL (host/db, for logs).
split_database_url() {
  local url=$1
  [[ $url =~ ^(postgres(ql)?://)(([^@/?#]*)@)?(.*)$ ]] || die "the database URL must be a postgres:// URL"
  local scheme=${BASH_REMATCH[1]} userinfo=${BASH_REMATCH[4]} rest=${BASH_REMATCH[5]}
  DB_URL=$url
  if [[ $userinfo == *:* ]]; then
    PGPASSWORD=$(percent_decode "${userinfo#*:}")
    export PGPASSWORD
    DB_URL="${scheme}${userinfo%%:*}@${rest}"
  fi
  DB_LABEL=${rest%%\?*}
}

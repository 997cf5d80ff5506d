# enotify (RFC 5435) with mailto (RFC 5436)
require ["enotify", "variables", "fileinto", "envelope"];
if header :matches "subject" "*" { set :encodeurl "subj" "${1}"; }
if valid_notify_method "mailto:pager@example.org" {
  notify :importance "1" :message "mail from ${1}" "mailto:pager@example.org?subject=${subj}";
}
if envelope :matches "from" "*@*" {
  notify :from "me@example.org" "mailto:pager@example.org?cc=${2}-watch@example.org&X-Origin=${2}";
}
if notify_method_capability "mailto:pager@example.org" "online" "maybe" { fileinto "maybe-online"; }
set :encodeurl "q" "a+b c";
fileinto "q-${q}";

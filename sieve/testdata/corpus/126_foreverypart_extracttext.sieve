# foreverypart and extracttext (RFC 5703)
require ["foreverypart", "mime", "extracttext", "variables", "fileinto", "relational"];
set "n" "";
foreverypart :name "outer" {
  set "n" "${n}p";
  if header :mime :type "content-type" "text" {
    extracttext :first 200 "text";
    if string :contains "${text}" ["zeppelin", "walrus", "rapport", "money", "Body text"] { fileinto "word-found"; }
    extracttext :length "len";
    if string :value "gt" :comparator "i;ascii-numeric" "${len}" "40" { fileinto "long-text"; }
  }
  if header :mime :contenttype "content-type" "message/rfc822" {
    foreverypart { if header :mime :matches "subject" "*" { fileinto "inner-${1}"; break :name "outer"; } }
  }
}
if string :count "ge" :comparator "i;ascii-numeric" "${n}" "1" {}
fileinto "parts-${n}";

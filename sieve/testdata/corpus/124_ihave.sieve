# ihave (RFC 5463): extensions this server may lack, guarded
require ["ihave", "fileinto"];
if ihave "x-vendor-thing" {
  xvendorthing :option "value";
} elsif ihave ["mime", "relational"] {
  if header :mime :anychild :contenttype "content-type" "text/html" { fileinto "has-html"; }
  if header :count "ge" "received" "1" { fileinto "received"; }
} elsif ihave "variables" {
  set "never" "x";
}
if ihave "enotify" {
  if header :contains "subject" "money" { error "spam-like subject"; }
}

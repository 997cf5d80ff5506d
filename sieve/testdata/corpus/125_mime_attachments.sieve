# mime (RFC 5703): attachments by type and file name, anywhere in the message
require ["mime", "fileinto", "variables"];
if header :mime :anychild :param "filename" :matches "content-disposition" ["*.exe", "*.zip", "*.js"] {
  fileinto "dangerous-${1}";
}
if header :mime :anychild :type "content-type" "image" { fileinto "images"; }
if header :mime :anychild :subtype "content-type" "rfc822" { fileinto "forwarded"; }
if exists :mime :anychild "content-id" { fileinto "inline-parts"; }
if address :mime :anychild :domain "from" "example.net" { fileinto "from-net-inside"; }
if header :mime :type "content-type" "multipart" { fileinto "multipart"; } else { fileinto "single"; }
if header :mime :param "charset" :matches "content-type" "*" { fileinto "charset-${1}"; }

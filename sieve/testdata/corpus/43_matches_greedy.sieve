require ["variables", "fileinto"];
if header :matches "subject" "*e*" { fileinto "a-${1}-b-${2}"; }

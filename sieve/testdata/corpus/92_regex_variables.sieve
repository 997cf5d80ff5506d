require ["regex", "variables", "fileinto"];
set "p" "^([^ ]+) ";
if header :regex "subject" "${p}" { fileinto "first-${1}"; }
if string :regex "abc-123" "([a-z]+)-([0-9]+)" { fileinto "s-${2}-${1}"; }

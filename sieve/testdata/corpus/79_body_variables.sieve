require ["body", "fileinto", "variables"];
if body :raw :matches "*Bob,*" { fileinto "greet-${1}"; }
set "w" "tomorrow";
if body :contains "${w}" { fileinto "var-${w}"; }

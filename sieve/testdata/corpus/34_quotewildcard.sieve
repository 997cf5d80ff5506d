require ["variables", "fileinto"];
set :quotewildcard "pat" "build *broken*";
if header :matches "subject" "*${pat}*" { fileinto "Quoted"; }
set "raw" "b?ild";
if header :matches "subject" "*${raw}*" { fileinto "Raw"; }

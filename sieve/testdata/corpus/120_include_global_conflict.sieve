require ["include", "variables", "fileinto"];
set "x" "1";
global "x";
fileinto "x${x}";

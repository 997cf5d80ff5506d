require ["include", "variables", "fileinto"];
global "x";
set "x" "5";
include "readx";

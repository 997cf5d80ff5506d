require ["include", "variables", "fileinto"];
global "verdict";
set "verdict" "none";
include "setvar";
fileinto "verdict-${verdict}";
if string :is "${global.verdict}" "" { fileinto "empty-global"; } else { fileinto "ns-${global.verdict}"; }

require ["include", "variables", "fileinto"];
if true { global "x"; }
set "x" "2";
include "setvar";
fileinto "x${x}";
if string :is "${global.verdict}" "" { fileinto "no-verdict"; }

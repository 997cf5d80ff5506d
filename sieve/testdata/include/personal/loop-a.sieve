require ["include"];
include "loop-b";

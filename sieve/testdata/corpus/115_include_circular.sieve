require ["include"];
include "loop-a";

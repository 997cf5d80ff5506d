require ["include"];
include "missing";

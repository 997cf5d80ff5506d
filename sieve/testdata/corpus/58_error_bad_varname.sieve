require "variables";
set "a-b" "c";

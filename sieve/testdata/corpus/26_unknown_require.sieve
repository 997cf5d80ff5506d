require "vacation";
keep;

require "x-frop";
keep;

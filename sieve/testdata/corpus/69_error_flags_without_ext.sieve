require "fileinto";
fileinto :flags "a" "b";

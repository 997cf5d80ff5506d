require "fileinto";
fileinto :create "b";

require "fileinto";
if exists "list-id" { fileinto "Lists"; stop; }
fileinto "Rest";

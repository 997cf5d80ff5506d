require "fileinto";
if address :all :contains "to" "undisclosed" { fileinto "Group"; }
if address :domain :is "from" "shop.example" { fileinto "Shop"; }

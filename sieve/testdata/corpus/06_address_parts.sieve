require "fileinto";
if address :domain :is "from" "example.com" { fileinto "Domain"; }
if address :localpart :is "to" "carol" { fileinto "Carol"; }
if address :all :is ["cc","to"] "dave@example.net" { fileinto "Dave"; }

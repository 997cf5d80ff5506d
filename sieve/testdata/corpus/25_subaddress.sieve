require ["subaddress", "envelope", "fileinto"];
if envelope :detail "to" "lists" { fileinto "Lists"; }
if envelope :user "to" "dave" { fileinto "Dave"; }
if address :detail :is "to" "lists" { fileinto "HeaderDetail"; }
if envelope :detail :matches "to" "*" { fileinto "AnyDetail"; }

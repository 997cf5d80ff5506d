require ["envelope", "fileinto"];
if envelope :is "from" "alice@example.com" { fileinto "FromAlice"; }
if envelope :domain :is "to" "example.org" { fileinto "ToOrg"; }
if envelope :localpart :matches "from" "owner-*" { fileinto "Owner"; }

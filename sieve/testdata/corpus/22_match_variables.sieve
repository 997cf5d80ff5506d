require ["variables", "fileinto", "envelope"];
if header :matches "subject" "[*] *" { fileinto "List-${1}"; }
if header :matches "from" "*<*@*>" { fileinto "Sender-${2}-at-${3}"; }
if envelope :matches "to" "*+*@*" { fileinto "Detail-${2}"; }

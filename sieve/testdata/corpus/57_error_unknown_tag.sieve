if address :frob "from" "a" { keep; }

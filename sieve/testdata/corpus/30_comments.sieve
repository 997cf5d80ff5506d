/* a block comment
   over lines */ require "fileinto"; # trailing
if /* inline */ true { fileinto "C"; } # done

require "fileinto";
if size :over 10K { fileinto "Big"; }
if size :under 1k { fileinto "Small"; }

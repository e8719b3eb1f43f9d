"""Reader-study statistics and report.

* :mod:`lvp.study.roc` - empirical AUC, DeLong (mid-rank / counting, clustered) CI and paired test;
* :mod:`lvp.study.agreement` - sensitivity / specificity, weighted and Fleiss kappa, Krippendorff's
  alpha, ICC with CIs, bootstrap helpers;
* :mod:`lvp.study.mrmc` - Obuchowski-Rockette with Hillis df, fixed-reader / fixed-case analyses,
  standalone algorithm vs readers;
* :mod:`lvp.study.mixed` - crossed random-effects REML (reading time);
* :mod:`lvp.study.table`, :mod:`lvp.study.design` - the reads as columns, the complete design, the flow;
* :mod:`lvp.study.interrater`, :mod:`lvp.study.timing` - agreement between arms, reading time;
* :mod:`lvp.study.analysis` - the study analysis; :mod:`lvp.study.report` - the HTML report;
* :mod:`lvp.study.export` - the long CSV for MRMCaov / RJafroc; :mod:`lvp.study.simulate` - a
  simulated study (documentation, benchmark).
"""

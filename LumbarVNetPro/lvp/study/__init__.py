"""Reader-study statistics: ROC / DeLong, agreement (kappa, ICC), Obuchowski-Rockette MRMC, report.

* :mod:`lvp.study.roc` - empirical AUC, DeLong CI and paired test, ROC points;
* :mod:`lvp.study.agreement` - sensitivity / specificity, weighted and Fleiss kappa, ICC, accuracy;
* :mod:`lvp.study.mrmc` - Obuchowski-Rockette ANOVA with Hillis df (DeLong or jackknife covariance);
* :mod:`lvp.study.analysis` - the study analysis from exported reads;
* :mod:`lvp.study.report` - the HTML report (matplotlib, Agg backend).
"""

# SAPA-deform (journal SAPA; tiny-smart/sapa sapa_deform.SAPADeform): 9 learned points, 4 groups.
upsample_cfg = dict(type='SAPADeform')

"""Other systems' declarations, brought to tripwire.

``metaflow`` deploys Metaflow flows with the triggers their own decorators declare.
``argo_sensor`` turns an Argo Events ``Sensor`` manifest into a flow file, with the
``argo_*``, ``gjson``, ``go_regex`` and ``govaluate`` modules translating its parts and
the foreign syntaxes it meets; what has no exact equivalent is refused with the reason.
"""
